"""Reading keras-retinanet style `.ini` configuration files."""

import configparser
import os

from .anchors import AnchorParameters


def read_config_file(path):
    """Parses an `.ini` file; raises ValueError naming the file if it is missing or malformed."""
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    config = configparser.ConfigParser(interpolation=None)  # values are numbers: a '%' is no substitution
    try:
        with open(path, encoding="utf-8-sig") as handle:
            config.read_file(handle)
    except configparser.Error as error:
        raise ValueError(f"config file {path!r} is not a valid .ini file: {' '.join(str(error).split())}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"config file {path!r} is not UTF-8 text ({error.reason})") from None
    if "anchor_parameters" in config:
        missing = [k for k in ("sizes", "strides", "ratios", "scales") if k not in config["anchor_parameters"]]
        if missing:
            raise ValueError(f"config file {path!r}: [anchor_parameters] lacks {', '.join(missing)}")
    return config


def parse_anchor_parameters(config):
    """AnchorParameters from the `[anchor_parameters]` section of a parsed config."""
    section = config["anchor_parameters"]

    def numbers(key, kind):
        try:
            values = [float(v) for v in section[key].split()]
        except ValueError:
            raise ValueError(f"[anchor_parameters] {key} = {section[key]!r} is not a list of numbers") from None
        if not values:
            raise ValueError(f"[anchor_parameters] {key} is empty")
        bad = [v for v in values if not (0 < v < float("inf")) or (kind is int and v != int(v))]
        if bad:
            what = "positive integers" if kind is int else "positive numbers"
            raise ValueError(f"[anchor_parameters] {key} = {section[key]!r}: {bad[0]:g} is not allowed; "
                             f"{key} are {what}")
        return [kind(v) for v in values]

    return AnchorParameters(
        sizes=numbers("sizes", float),
        strides=numbers("strides", int),
        ratios=numbers("ratios", float),
        scales=numbers("scales", float),
    )


def anchor_parameters_from_file(path):
    """AnchorParameters of an `.ini` file, or the defaults when it has no `[anchor_parameters]`."""
    config = read_config_file(path)
    if "anchor_parameters" not in config:
        return AnchorParameters.default
    try:
        return parse_anchor_parameters(config)
    except ValueError as error:
        raise ValueError(f"config file {path!r}: {error}") from None
