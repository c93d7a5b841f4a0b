"""TFDS builders for the three data sets, TensorFlow-free (uint8 Tensor features, array_record).

- `cxr_phantom.CxrPhantom`: the embedded procedural set, generated in `_generate_examples`.
- `kermany.Kermany`: the Kermany folder layout, read from ``manual_dir``.
- `class_folders.ClassFolders`: one folder per class (the COVID set), split by seed.

Every builder takes a BuilderConfig whose name encodes all of its parameters (see each module),
so a changed config builds a new set instead of reusing a stale one. Build with
``download_and_prepare(file_format="array_record", ...)`` and read with ``as_data_source(split)``;
`xraygan_jax.data.sources` does both from a data config.
"""
