import errno
import hashlib
import http.server
import os
import threading
import zipfile
from functools import partial

import pytest
import torch

from l2l_omniglot.data import omniglot as omniglot_module
from l2l_omniglot.data.omniglot import download_omniglot, load_omniglot, load_set
from l2l_omniglot.errors import DataError
from tests.conftest import write_tiny_set


def test_real_omniglot_has_its_published_counts(omniglot):
    assert omniglot.background.summary() == {"alphabets": 30, "characters": 964, "images": 19280}
    assert omniglot.evaluation.summary() == {"alphabets": 20, "characters": 659, "images": 13180}
    for part in omniglot.sets:
        assert torch.bincount(part.labels).tolist() == [20] * len(part.characters)
        assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (28, 28)


def test_cached_load_equals_cold_decode_and_decodes_nothing(data_root, cache_dir, monkeypatch):
    cold = load_set(data_root, "evaluation", cache_dir=cache_dir)
    assert cold.cache_path is not None and cold.cache_path.is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached load decoded an image")

    # Speed is measured in bench/; here, that the cache is what a second load reads.
    monkeypatch.setattr("l2l_omniglot.data.omniglot.decode_image", no_decoding)
    cached = load_set(data_root, "evaluation", cache_dir=cache_dir)
    assert torch.equal(cold.images, cached.images)
    assert torch.equal(cold.labels, cached.labels)
    assert cold.characters == cached.characters


def test_cache_is_keyed_by_image_size(tiny_root, cache_dir):
    small = load_set(tiny_root, "background", size=20, cache_dir=cache_dir)
    large = load_set(tiny_root, "background", size=28, cache_dir=cache_dir)
    assert small.images.shape[1:] == (20, 20) and large.images.shape[1:] == (28, 28)
    assert small.cache_path != large.cache_path


def test_extracted_folders_load_like_archives(tiny_root, tmp_path, cache_dir):
    folder_root = tmp_path / "folders"
    for name in ("background", "evaluation"):
        with zipfile.ZipFile(tiny_root / f"images_{name}.zip") as archive:
            archive.extractall(folder_root)
    from_zip = load_omniglot(tiny_root, cache_dir=cache_dir)
    from_folders = load_omniglot(folder_root, cache_dir=cache_dir)
    assert torch.equal(from_zip.background.images, from_folders.background.images)
    assert from_zip.evaluation.characters == from_folders.evaluation.characters


def test_missing_root_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*--data-root.*--download"):
        load_omniglot(tmp_path / "nowhere")


def test_root_with_one_set_names_the_missing_one(tiny_root):
    (tiny_root / "images_evaluation.zip").unlink()
    with pytest.raises(DataError, match="evaluation set not found"):
        load_omniglot(tiny_root)


def test_corrupt_zip_names_the_file(tiny_root, cache_dir):
    (tiny_root / "images_background.zip").write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="images_background.zip is not a readable zip"):
        load_omniglot(tiny_root, cache_dir=cache_dir)


def test_truncated_png_inside_a_zip_names_the_image(tiny_root, cache_dir):
    path = tiny_root / "images_background.zip"
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    victim = sorted(members)[7]
    members[victim] = members[victim][:50]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(DataError, match=victim.split("/", 1)[1]):
        load_omniglot(tiny_root, cache_dir=cache_dir)


@pytest.fixture
def archive_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving two tiny Omniglot-layout archives."""
    served = tmp_path / "served"
    served.mkdir()
    write_tiny_set(served / "images_background.zip", "background")
    write_tiny_set(served / "images_evaluation.zip", "evaluation", alphabets=1)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    digests = {name: hashlib.sha256((served / f"images_{name}.zip").read_bytes()).hexdigest()
               for name in ("background", "evaluation")}
    yield f"http://127.0.0.1:{server.server_address[1]}", digests
    server.shutdown()


def test_download_with_the_right_checksum_succeeds(archive_server, tmp_path, cache_dir):
    url, digests = archive_server
    root = download_omniglot(tmp_path / "fetched", base_url=url, checksums=digests, algorithm="sha256")
    omniglot = load_omniglot(root, cache_dir=cache_dir)
    assert omniglot.background.summary() == {"alphabets": 2, "characters": 6, "images": 120}


def test_download_with_a_wrong_checksum_is_rejected_and_discarded(archive_server, tmp_path):
    url, digests = archive_server
    wrong = dict(digests, background="0" * 64)
    with pytest.raises(DataError, match="expected 0000"):
        download_omniglot(tmp_path / "fetched", base_url=url, checksums=wrong, algorithm="sha256")
    assert list((tmp_path / "fetched").iterdir()) == []


def test_a_sound_cache_is_used_without_decoding(tiny_root, cache_dir, monkeypatch):
    first = load_set(tiny_root, "background", cache_dir=cache_dir)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a sound cache was decoded again")

    monkeypatch.setattr(omniglot_module, "decode_set", no_decoding)
    again = load_set(tiny_root, "background", cache_dir=cache_dir)
    assert again.cache_path == first.cache_path and torch.equal(again.images, first.images)


def test_a_cache_that_cannot_be_written_costs_only_speed(tiny_root, cache_dir, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    loaded = load_set(tiny_root, "background", cache_dir=cache_dir)
    assert loaded.summary() == {"alphabets": 2, "characters": 6, "images": 120} and loaded.cache_path is None
    assert list((cache_dir / "decoded").iterdir()) == []  # no temporary left behind
