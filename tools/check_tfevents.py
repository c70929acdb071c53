#!/usr/bin/env python3
"""Reads vitscuda TensorBoard event files with TensorBoard's own readers and prints what they hold.

    python3 tools/check_tfevents.py LOGDIR_OR_EVENT_FILE [...]

Needs the `tensorboard` pip package (`pip install tensorboard`, in a virtual environment if you like);
Pillow is used to decode images when it is installed. Not used by the test suite.

For every events.out.tfevents.* file it
  1. reads each TFRecord with TensorBoard's record reader, which checks both masked CRC32C values
     (a bad checksum or a truncated record is an error here, where TensorBoard itself would only
     log a warning and stop reading the file),
  2. parses each record as a tensorflow.Event protobuf (TensorBoard's generated event_pb2),
  3. loads the file with tensorboard's EventAccumulator and prints every scalar, audio clip (WAV
     header decoded with the `wave` module) and image (PNG decoded with Pillow, else checked with zlib).
Exits with status 1 if anything fails to read or decode.
"""
import argparse
import io
import os
import struct
import sys
import wave
import zlib


def event_files(paths):
    for path in paths:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                if "tfevents" in name:
                    yield os.path.join(path, name)
        else:
            yield path


def read_records(path):
    """Every record's bytes, CRCs checked by TensorBoard's stub reader."""
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

    reader = PyRecordReader_New(path)
    records = []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return records
        records.append(reader.record())


def png_summary(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every pixel, verifying the zlib stream
            return f"PNG {image.size[0]}x{image.size[1]} mode {image.mode} (decoded by Pillow)"
    except ImportError:
        pass
    # Without Pillow: walk the chunks, check their CRC32s and inflate the pixel data.
    at, idat, size = 8, b"", None
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r} CRC mismatch")
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw = zlib.decompress(idat)
    return f"PNG {size[0]}x{size[1]}, {len(raw)} raw bytes (checked with zlib)"


def wav_summary(data):
    with wave.open(io.BytesIO(data)) as w:
        frames = w.readframes(w.getnframes())
        peak = max((abs(v) for (v,) in struct.iter_unpack("<h", frames)), default=0) if w.getsampwidth() == 2 else None
        return (
            f"WAV {w.getnchannels()} ch, {8 * w.getsampwidth()}-bit, {w.getframerate()} Hz, "
            f"{w.getnframes()} frames, peak {peak}"
        )


def check_file(path):
    from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
    from tensorboard.compat.proto import event_pb2

    print(f"== {path}")
    records = read_records(path)
    print(f"   {len(records)} records, all length and data CRC32C checks passed")
    kinds = {}
    for i, record in enumerate(records):
        event = event_pb2.Event.FromString(record)
        if event.HasField("file_version"):
            print(f"   record {i}: file_version {event.file_version!r}, wall_time {event.wall_time:.3f}")
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            kinds[kind] = kinds.get(kind, 0) + 1

    acc = event_accumulator.EventAccumulator(
        path,
        size_guidance={
            event_accumulator.SCALARS: 0,
            event_accumulator.IMAGES: 0,
            event_accumulator.AUDIO: 0,
            event_accumulator.TENSORS: 0,
        },
    )
    acc.Reload()
    tags = acc.Tags()
    print(f"   EventAccumulator tags: scalars {tags['scalars']}, audio {tags['audio']}, images {tags['images']}")
    loaded = 0
    for tag in tags["scalars"]:
        for e in acc.Scalars(tag):
            print(f"   scalar {tag!r} step {e.step}: {e.value!r}")
            loaded += 1
    for tag in tags["audio"]:
        for e in acc.Audio(tag):
            print(
                f"   audio {tag!r} step {e.step}: sample_rate {e.sample_rate}, length_frames {e.length_frames}, "
                f"content_type {e.content_type!r}, {wav_summary(e.encoded_audio_string)}"
            )
            loaded += 1
    for tag in tags["images"]:
        for e in acc.Images(tag):
            print(f"   image {tag!r} step {e.step}: {e.width}x{e.height}, {png_summary(e.encoded_image_string)}")
            loaded += 1
    expected = sum(kinds.values())
    if loaded != expected:
        raise ValueError(f"EventAccumulator returned {loaded} values, the records hold {expected} ({kinds})")
    print(f"   {loaded} summary values read back")

    # The path the TensorBoard server takes: legacy values migrated to tensors owned by plugins.
    plugin_acc = plugin_event_accumulator.EventAccumulator(path, size_guidance={plugin_event_accumulator.TENSORS: 0})
    plugin_acc.Reload()
    migrated = []
    for tag in plugin_acc.Tags()["tensors"]:
        plugin = plugin_acc.SummaryMetadata(tag).plugin_data.plugin_name
        migrated.append(f"{tag} ({plugin}, {len(plugin_acc.Tensors(tag))})")
    print(f"   as the TensorBoard server sees them: {', '.join(migrated)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="log directories or event files")
    args = parser.parse_args()
    try:
        import tensorboard
    except ImportError:
        sys.exit("check_tfevents.py needs the tensorboard package: pip install tensorboard")
    print(f"tensorboard {tensorboard.__version__}")
    failed = False
    files = list(event_files(args.paths))
    if not files:
        sys.exit("no event files found")
    for path in files:
        try:
            check_file(path)
        except Exception as error:  # report every file, then fail
            print(f"   FAILED: {type(error).__name__}: {error}")
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
