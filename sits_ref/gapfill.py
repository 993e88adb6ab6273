"""Temporal gap-filling of image time series, as iota2 does it: linear in time.

A pixel's observation on a date is invalid when a mask flags it (cloud, shadow, no
data, saturation), or when a band holds the nodata value, NaN or inf. Each invalid
observation is replaced by linear interpolation in time between the nearest valid
observations before and after it; before the first or after the last valid one, by
that nearest valid value (no extrapolation). The series can be put onto other dates
at the same time, e.g. a regular grid of every 10 days shared by several tiles: the
value on a target date interpolates the valid observations around it the same way.

A pixel without any valid observation cannot be filled: it is reported as invalid
(and left 0), the only pixels left out of training, scoring and maps.

Days are integers (days since any fixed origin); values are float arrays
``(T, C, ...)``: T dates, C bands, any pixel shape after that. numpy only.
"""
import datetime

import numpy as np


def day_numbers(dates) -> np.ndarray:
    """'YYYY-MM-DD' strings -> (T,) int64 days since 1970-01-01."""
    epoch = datetime.date(1970, 1, 1)
    return np.array([(datetime.date.fromisoformat(d) - epoch).days for d in dates], np.int64)


def regular_dates(start: str, end: str, step_days: int) -> list[str]:
    """'YYYY-MM-DD' dates from ``start`` every ``step_days`` days, up to ``end`` included."""
    first, last = (datetime.date.fromisoformat(d) for d in (start, end))
    if step_days < 1 or last < first:
        raise ValueError(f"date grid {start} .. {end} every {step_days} days is empty")
    n = (last - first).days // step_days + 1
    return [(first + datetime.timedelta(days=i * step_days)).isoformat() for i in range(n)]


def fill_gaps(values, valid, days, target_days=None):
    """Gap-filled series and the pixels that had at least one valid observation.

    values: (T, C, ...) float observations; valid: (T, ...) bool, per date and pixel;
    days: (T,) increasing observation days; target_days: (D,) days to return (default:
    ``days``). Returns (filled (D, C, ...) float32, any_valid (...) bool); pixels
    without a valid observation are 0 in ``filled``. When the target days are the
    observation days and every observation is valid, ``values`` is returned as it is
    (``values`` is never modified).
    """
    values, valid = np.asarray(values), np.asarray(valid, bool)
    days = np.asarray(days, np.int64)
    target = days if target_days is None else np.asarray(target_days, np.int64)
    t, c = values.shape[:2]
    pixels = valid.shape[1:]
    if valid.shape[0] != t or values.shape[2:] != pixels or len(days) != t:
        raise ValueError(f"values {values.shape}, valid {valid.shape} and {len(days)} days "
                         "do not match")
    if t > 1 and np.any(np.diff(days) <= 0):
        raise ValueError("observation days must be strictly increasing")
    v = values.reshape(t, c, -1).astype(np.float32, copy=False)
    ok = valid.reshape(t, -1)
    any_valid = ok.any(axis=0)
    if np.array_equal(target, days) and (ok.all(axis=0) | ~any_valid).all():
        # nothing to interpolate: every pixel is valid on every date, or on none
        filled = v if any_valid.all() else np.where(any_valid, v, np.float32(0))
        return filled.reshape(values.shape), any_valid.reshape(pixels)
    before, after = _bracketing_valid(ok, days, target)             # (D, P) each
    filled = _interpolate(v, days, target, before, after)
    filled[:, :, ~any_valid] = 0
    return filled.reshape(len(target), c, *pixels), any_valid.reshape(pixels)


def _bracketing_valid(ok, days, target):
    """For each target day and pixel, the index of the last valid observation on or
    before it and of the first valid one on or after it; -1 where there is none."""
    t = len(days)
    index = np.arange(t)[:, None]
    last_valid = np.maximum.accumulate(np.where(ok, index, -1), axis=0)          # (T, P)
    next_valid = np.minimum.accumulate(np.where(ok, index, t)[::-1], axis=0)[::-1]
    k_before = np.searchsorted(days, target, side="right") - 1     # last date <= target
    k_after = np.searchsorted(days, target, side="left")           # first date >= target
    no_pixel = np.full((1, ok.shape[1]), -1)
    before = np.where((k_before >= 0)[:, None], last_valid[np.maximum(k_before, 0)], no_pixel)
    after = np.where((k_after < t)[:, None], next_valid[np.minimum(k_after, t - 1)], t)
    after = np.where(after >= t, -1, after)
    return before, after


def _interpolate(v, days, target, before, after):
    """Linear interpolation in time between the bracketing valid observations
    (the nearest one where only one side exists; pixels without any valid
    observation get an arbitrary value, zeroed by the caller)."""
    b = np.where(before >= 0, before, after).clip(0)    # none before: the next one
    a = np.where(after >= 0, after, before).clip(0)     # none after: the last one
    day_b, day_a = days[b], days[a]
    # where b == a (one side only) the step below is 0 whatever the weight
    weight = (target[:, None] - day_b) / np.maximum(day_a - day_b, 1)
    weight = weight.astype(np.float32)[:, None, :]                  # (D, 1, P)
    filled = np.take_along_axis(v, b[:, None, :], axis=0)           # (D, C, P), a copy
    step = np.take_along_axis(v, a[:, None, :], axis=0)
    step -= filled                                      # in place: at most two copies
    step *= weight
    filled += step
    return filled
