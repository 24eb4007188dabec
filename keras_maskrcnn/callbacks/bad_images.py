"""Reports the unreadable images skipped in each epoch and stops a run that has too many."""

import keras

from ..preprocessing.bad_images import TooManyBadImagesError, listing, too_many_message


class BadImageMonitor(keras.callbacks.Callback):
    """Watches the `bad_images` record of a generator made with skip_bad_images=True.

    At the end of every epoch stores in logs['skipped_images'] how many images were replaced in
    that epoch's batches, and prints which (verbose=1). After every batch and epoch raises
    TooManyBadImagesError (with the list of files) once more than `max_bad_images` distinct
    images of the data set, those left out when the generator was built included, are bad;
    `total`: the data set's images, readable or not, for the message.
    """

    def __init__(self, generator, max_bad_images, total=None, verbose=1):
        super().__init__()
        self.generator = generator
        self.max_bad_images = max_bad_images
        self.total = total if total is not None else generator.size() + len(generator.bad_images)
        self.verbose = verbose
        self._start = 0

    def check(self):
        """TooManyBadImagesError when more than max_bad_images images are bad."""
        bad = self.generator.bad_images
        if len(bad) > self.max_bad_images:
            raise TooManyBadImagesError(too_many_message(len(bad), self.max_bad_images, self.total,
                                                         bad.messages().values()))

    def on_train_begin(self, logs=None):
        # Replacements before training (TensorFlow reads batches to learn their shapes) are not
        # of an epoch.
        self._start = self.generator.bad_images.event_count()

    def on_train_batch_end(self, batch, logs=None):
        self.check()

    def on_epoch_end(self, epoch, logs=None):
        events = self.generator.bad_images.events(self._start)
        self._start += len(events)
        if logs is not None:
            logs["skipped_images"] = len(events)
        if events and self.verbose:
            messages = self.generator.bad_images.messages()
            counts = {key: events.count(key) for key in dict.fromkeys(events)}
            lines = [messages[key] + (f" ({count} times)" if count > 1 else "") for key, count in counts.items()]
            print(f"\nEpoch {epoch + 1}: skipped {len(events)} unreadable image{'s' if len(events) > 1 else ''} "
                  f"(each replaced in its batch by another image):\n{listing(lines)}")
        self.check()
