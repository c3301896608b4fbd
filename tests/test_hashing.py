import hashlib

from ctsurv.hashing import file_sha256


def test_file_sha256_reads_across_chunks(tmp_path):
    data = bytes(range(256)) * 41  # 10,496 bytes: two whole 4 KiB chunks and a partial one
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    assert file_sha256(path, chunk=4096) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
