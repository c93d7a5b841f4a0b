"""Config sections shared by every job: the data set and the run's bookkeeping.

Not a job config itself; `dcgan.py`, `fcgan.py`, `test.py`, ... import from here and override
only what differs.
"""

import ml_collections


def data_config() -> ml_collections.ConfigDict:
    """Where images come from and how they are shaped (xraygan_jax.data.sources reads this)."""
    data = ml_collections.ConfigDict()
    # cxr_phantom (embedded, generated), kermany (chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}),
    # or folder (one folder per class, e.g. the COVID set; split by seed).
    data.source = "cxr_phantom"
    # The raw images for kermany / folder (TFDS manual_dir). Unused for cxr_phantom.
    data.dir = ""
    # Class folder names for `folder`; label i is class_names[i]. kermany and cxr_phantom fix
    # them to NORMAL, PNEUMONIA.
    data.class_names = ("NORMAL", "PNEUMONIA")
    # Side of the square images the models see (the set is built once per size).
    data.image_size = 64
    # Where prepared TFDS sets live; "" means $XRAYGAN_CACHE/tensorflow_datasets
    # ($XRAYGAN_CACHE defaults to ~/.cache/xraygan_jax).
    data.data_dir = ""
    # `folder` sets have no test split: a seeded, stratified split (80:20 as the second report).
    data.test_fraction = 0.2
    data.val_fraction = 0.0
    data.split_seed = 0
    # > 0: train on a seeded subset of this many images per class (split_seed), e.g. 100 for the
    # COVID report's set size (docs/small_data.md); 0 = the whole train split.
    data.train_images_per_class = 0
    # The embedded phantom set (docs/design_notes.md): sizes per split and difficulty in [0, 1].
    data.phantom = ml_collections.ConfigDict()
    data.phantom.num_train = 1000
    data.phantom.num_val = 100
    data.phantom.num_test = 300
    data.phantom.difficulty = 0.5
    data.phantom.seed = 0
    return data
