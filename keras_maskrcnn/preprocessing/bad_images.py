"""Images that cannot be read: the record a generator keeps of them, and the limit on their number.

A generator made with `skip_bad_images=True` leaves out the images whose files (or masks) are
missing or have an unreadable header when it is built, and replaces in a batch any image that
fails to decode later by another readable image. `BadImages` remembers each such image once
(key: the image's file, value: the message naming file and CSV line) and every time one was
replaced in a batch; it is shared with the worker processes of `use_multiprocessing`.
"""

import math
import multiprocessing
import threading
import warnings

SHOWN = 20
"""The most bad images a message lists one by one."""


class TooManyBadImagesError(ValueError):
    """More images are unreadable than a run allows (`--max-bad-images`)."""


class BadImageWarning(UserWarning):
    """An unreadable image was left out or replaced; the message names the file."""


class AnnotationWarning(UserWarning):
    """Annotations were left out or a data set's file holds something odd (a category without
    annotations); the message names the file and the annotations."""


def warn(message, stacklevel=3):
    """Issues a BadImageWarning."""
    warnings.warn(message, BadImageWarning, stacklevel=stacklevel)


def default_max_bad_images(total):
    """How many unreadable images a data set of `total` images may have: 1 %, at least 1."""
    return max(1, math.ceil(0.01 * total))


def listing(messages, shown=SHOWN):
    """The messages as indented lines, the first `shown` of them, then '... and K more'."""
    messages = list(messages)
    lines = [f"  {message}" for message in messages[:shown]]
    if len(messages) > shown:
        lines.append(f"  ... and {len(messages) - shown} more")
    return "\n".join(lines)


def too_many_message(count, limit, total, messages):
    """The error text of a run that found more than `limit` unreadable images among `total`."""
    return (f"{count} of {total} images cannot be read, more than --max-bad-images {limit} allows; "
            f"fix or remove them (or raise --max-bad-images):\n{listing(messages)}")


class BadImages:
    """The unreadable images of a generator, in the order they were found.

    shared: keep the record in a `multiprocessing.Manager` so that worker processes add to the
    same record as the main process (the generator's `use_multiprocessing`).
    """

    def __init__(self, shared=False):
        self._manager = None
        if shared:
            self._manager = multiprocessing.Manager()
            self._messages = self._manager.dict()
            self._events = self._manager.list()
            self._lock = self._manager.Lock()
        else:
            self._messages = {}
            self._events = []
            self._lock = threading.Lock()

    def __getstate__(self):
        if self._manager is None:  # a plain record is copied without its lock
            return {"_manager": None, "_messages": dict(self._messages), "_events": list(self._events)}
        state = dict(self.__dict__)
        state["_manager"] = True  # the proxies travel, the manager stays with the main process
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._manager is None:
            self._lock = threading.Lock()

    def add(self, key, message, replaced=False):
        """Records image `key`; `replaced`: it was replaced in a batch (an event of this epoch).
        Returns True the first time `key` is recorded."""
        with self._lock:
            new = key not in self._messages
            if new:
                self._messages[key] = message
            if replaced:
                self._events.append(key)
        return new

    def __len__(self):
        return len(self._messages)

    def __contains__(self, key):
        return key in self._messages

    def messages(self):
        """{key: message} of every bad image, in the order found."""
        return dict(self._messages)

    def events(self, start=0):
        """Keys of the images replaced in batches, from the `start`-th replacement on."""
        return list(self._events[start:])

    def event_count(self):
        """How many replacements have happened."""
        return len(self._events)
