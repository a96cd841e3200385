"""The progress bar the snapshot commands draw on a terminal (never into a pipe or a log)."""
import sys

BAR = 30


def progress(stream, done: int, total: int) -> None:
    if not sys.stderr.isatty():
        return
    filled = BAR * done // max(total, 1)
    stream.write(f"\r[{'#' * filled}{'.' * (BAR - filled)}] {done}/{total}", ending="")
    if done == total:
        stream.write("")
