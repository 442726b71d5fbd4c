"""``train.py --task classification`` (the default): labelled images and their pipelines (``data``),
compact image classifiers (``archs``) and the task that trains and scores them (``task.Classification``)."""
