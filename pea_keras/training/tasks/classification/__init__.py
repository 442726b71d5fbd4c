"""``train.py --task classification`` (the default): compact image classifiers (``archs``) and the
task that trains and scores them (``task.Classification``)."""
