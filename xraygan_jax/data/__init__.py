"""Data: every source becomes an indexable set of records {"image": uint8 HxWx1, "label": int}.

Modules:
  phantom   the embedded procedural chest radiograph set `cxr_phantom`.
  folders   ingestion of the Kermany layout and of one-folder-per-class layouts.
  tfds      TF-free TFDS builders for the three sets (uint8 tensors in array_record).
  sources   `get_source(data_config, split)`: a random-access source for any configured set.
  pipeline  grain input pipelines: shuffle per epoch by seed, shard by process, batch, resume.
  mixing    training sets with a given fraction of synthetic images.
"""
