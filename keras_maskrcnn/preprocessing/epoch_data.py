"""What `Model.fit` trains on: a Generator as a `keras.utils.PyDataset` of a set number of steps."""

import keras


class EpochData(keras.utils.PyDataset):
    """A generator seen as exactly `steps` batches per epoch (default its length), wrapping
    around when steps exceeds the length; the generator reshuffles at every epoch end."""

    def __init__(self, generator, steps=None):
        super().__init__(workers=generator.workers, use_multiprocessing=generator.use_multiprocessing,
                         max_queue_size=generator.max_queue_size)
        self.generator = generator
        self.steps = steps or len(generator)

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        return self.generator[index % len(self.generator)]

    def on_epoch_end(self):
        self.generator.on_epoch_end()


class ShardedEpochData(EpochData):
    """EpochData of one worker of `maskrcnn-train --multi-worker`: for each of `steps` global
    batches, its `shards` of `count` (Generator.compute_shard), one item per shard."""

    def __init__(self, generator, steps, shards, count):
        super().__init__(generator, steps)
        self.shards, self.count = list(shards), int(count)

    def __len__(self):
        return self.steps * len(self.shards)

    def __getitem__(self, index):
        step, local = divmod(index, len(self.shards))
        index = step % len(self.generator)
        return self.generator.call_in_worker("compute_shard", index, self.shards[local], self.count,
                                             self.generator.groups[index])
