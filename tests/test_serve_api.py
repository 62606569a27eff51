"""``brats serve`` API (issue 16): health, prediction on the upload's grid, label conventions, upload checks,
the size limit while streaming, the per-request folders, and predictions serialised on one model.

The model is a tiny smp U-Net checkpoint written by production code (``build_model`` + ``save_checkpoint``)
whose head predicts ET everywhere, so the expected labels are known; the case is a 48x48x32 synthetic case.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from brats.serve import create_app

torch.set_num_threads(1)

SHAPE = (48, 48, 32)
MODS = ("t1", "t1ce", "t2", "flair")


def tiny_checkpoint(path: Path, bias_class: int = 3) -> Path:
    """A resnet18 depth-3 U-Net in the training checkpoint format; its head gives ``bias_class`` everywhere."""
    from tests.test_infer import make_checkpoint

    return make_checkpoint(path, [5.0 if c == bias_class else 0.0 for c in range(4)])


def synthetic_case(root: Path, shape: tuple[int, int, int] = SHAPE, index: int = 0) -> dict[str, Path]:
    """Case ``index`` of the synthetic cohort of seed 0 (2021 naming) at ``shape``: modality -> file."""
    from brats.synth import write_case

    folder = write_case(root, seed=0, index=index, shape=shape)
    return {m: folder / f"{folder.name}_{m}.nii.gz" for m in MODS}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return synthetic_case(tmp_path_factory.mktemp("cases"))


@pytest.fixture(scope="module")
def app(tmp_path_factory, files):
    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "et.pt")
    return create_app(ckpt, cases_dir=files["t1"].parent.parent, max_upload_mb=2, device="cpu")


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """A real uvicorn server for ``app`` in a thread on a free localhost port; yields its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def upload(files: dict[str, Path], skip: tuple[str, ...] = ()) -> dict[str, tuple[str, bytes]]:
    return {m: (p.name, p.read_bytes()) for m, p in files.items() if m not in skip}


def tmp_root(app) -> Path:
    return app.state.serve.tmp_root


def test_health(client):
    r = client.get("/api/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok"
    assert h["model"]["modalities"] == list(MODS) and h["model"]["checkpoint"] == "et.pt"
    assert h["labels"]["2021"] == {"0": "background", "1": "NCR", "2": "ED", "4": "ET"}
    assert h["labels"]["2023"]["3"] == "ET"
    assert h["labels"]["colours"] == {"NCR": [230, 26, 26], "ED": [26, 204, 51], "ET": [255, 217, 0]}
    assert h["queue"]["running"] == 0 and h["queue"]["waiting"] == 0
    assert h["cases"] == 1


def read_nifti(data: bytes) -> nib.Nifti1Image:
    raw = gzip.decompress(data)
    return nib.Nifti1Image.from_bytes(raw)


@pytest.mark.parametrize("labels, et", [(None, 4), ("2023", 3)])
def test_predict_on_the_input_grid(client, app, files, labels, et):
    params = {} if labels is None else {"labels": labels}
    r = client.post("/api/predict", files=upload(files), params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/gzip"
    assert 'filename="segmentation.nii.gz"' in r.headers["content-disposition"]
    img = read_nifti(r.content)
    ref = nib.load(str(files["t1"]))
    assert img.shape == ref.shape == SHAPE
    np.testing.assert_array_equal(img.affine, ref.affine)
    assert img.get_data_dtype() == np.uint8
    seg = np.asarray(img.dataobj)
    brain = np.asarray(nib.load(str(files["flair"])).dataobj) != 0
    assert set(np.unique(seg).tolist()) <= {0, 1, 2, et}
    assert set(np.unique(seg[brain]).tolist()) == {et} and set(np.unique(seg[~brain]).tolist()) <= {0}
    assert r.headers["x-brats-labels"] == f"0,{et}"
    assert list(tmp_root(app).iterdir()) == []  # the request's folder is gone


def problems(r) -> dict[str, str]:
    return {p["field"]: p["problem"] for p in r.json()["problems"]}


def test_missing_flair(client, app, files):
    r = client.post("/api/predict", files=upload(files, skip=("flair",)))
    assert r.status_code == 422
    assert "flair" in r.json()["error"] and "missing modality flair" in problems(r)["flair"]
    assert list(tmp_root(app).iterdir()) == []


def test_not_nifti(client, files):
    bad = upload(files)
    bad["t2"] = ("notes.txt", b"hello")
    r = client.post("/api/predict", files=bad)
    assert r.status_code == 422 and "not a NIfTI file" in problems(r)["t2"]
    bad["t2"] = ("fake_t2.nii.gz", gzip.compress(b"not a nifti header" * 30))
    r = client.post("/api/predict", files=bad)
    assert r.status_code == 422 and "t2" in problems(r) and "NIfTI" in problems(r)["t2"]


def test_mismatched_shapes_and_affines(client, files, tmp_path):
    small = synthetic_case(tmp_path / "small", (40, 48, 32))
    bad = upload(files)
    bad["t1ce"] = (small["t1ce"].name, small["t1ce"].read_bytes())
    r = client.post("/api/predict", files=bad)
    assert r.status_code == 422 and "shape (40, 48, 32)" in problems(r)["t1ce"]
    img = nib.load(str(files["flair"]))
    affine = img.affine.copy()
    affine[0, 3] += 0.5
    moved = nib.Nifti1Image(np.asarray(img.dataobj), affine, img.header)
    bad = upload(files)
    bad["flair"] = ("flair.nii", moved.to_bytes())  # uncompressed .nii works too
    r = client.post("/api/predict", files=bad)
    assert r.status_code == 422 and "affine differs" in problems(r)["flair"]


def test_bad_fields_and_labels(client, files):
    r = client.post("/api/predict", files={**upload(files), "t1c": ("x.nii.gz", b"1")})
    assert r.status_code == 422 and "unknown field" in problems(r)["t1c"]
    r = client.post("/api/predict", files=upload(files), params={"labels": "2019"})
    assert r.status_code == 422 and "labels" in r.json()["error"]
    r = client.post("/api/predict", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415


def test_oversize_is_refused_while_streaming(client, app):
    big = b"\0" * (3 * 2**20)  # limit is 2 MB
    r = client.post("/api/predict", files={"t1": ("t1.nii", big)})
    assert r.status_code == 413 and "limit of 2 MB" in r.json()["error"]

    def chunks():  # no Content-Length: the server counts while reading and stops past the limit
        for _ in range(64):
            yield (
                b'--b\r\nContent-Disposition: form-data; name="t1"; filename="t1.nii"\r\n\r\n' + big[: 2**16]
            )
        yield b"\0" * 2**22

    r = client.post(
        "/api/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code == 413
    r = client.post(
        "/api/predict",
        content=b"x",
        headers={"content-type": "multipart/form-data; boundary=b", "content-length": str(2**30)},
    )
    assert r.status_code == 413 and "1024.0 MB" in r.json()["error"]
    assert list(tmp_root(app).iterdir()) == []


def test_1gb_upload_to_a_real_server_is_refused_without_filling_the_disk(tmp_path):
    """uvicorn + the app, a 1 GiB body generated lazily: 413 whether the length is declared or not, and the
    request's folder never holds more than the limit (2 MB here) and is gone afterwards."""
    import httpx

    app = create_app(tiny_checkpoint(tmp_path / "et.pt"), max_upload_mb=2, device="cpu")
    root = tmp_root(app)
    head = b'--b\r\nContent-Disposition: form-data; name="t1"; filename="t1.nii"\r\n\r\n'
    peak = [0]

    def on_disk() -> int:
        """Bytes under the server's upload folder; a request folder may vanish while it is walked."""
        total = 0
        for dirpath, _, names in os.walk(root):
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(dirpath, name)).st_size
        return total

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(1024):
            peak[0] = max(peak[0], on_disk())
            yield bytes(2**20)

    with running_server(app) as url:
        ctype = {"content-type": "multipart/form-data; boundary=b"}
        r = httpx.post(f"{url}/api/predict", content=body(), headers=ctype, timeout=60)
        assert r.status_code == 413 and "limit of 2 MB" in r.json()["error"]
        declared = {**ctype, "content-length": str(len(head) + 2**30)}
        r = httpx.post(f"{url}/api/predict", content=body(), headers=declared, timeout=60)
        assert r.status_code == 413 and "1024.0 MB" in r.json()["error"]
        assert list(root.iterdir()) == []
    assert peak[0] <= 2 * 2**20


def test_two_concurrent_predictions_are_serialised(client, app, files):
    """Both succeed; the model never runs twice at once: the second waits until the first has finished."""
    seg = app.state.serve.segmenter
    spans: list[tuple[float, float]] = []
    original = seg.predict

    def slow_predict(*args, **kwargs):
        t0 = time.monotonic()
        time.sleep(0.5)
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((t0, time.monotonic()))

    def post() -> None:
        statuses.append(client.post("/api/predict", files=upload(files)).status_code)

    seg.predict = slow_predict
    statuses: list[int] = []
    queues: list[dict] = []
    try:
        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            queues.append(client.get("/api/health").json()["queue"])
            time.sleep(0.05)
    finally:
        seg.predict = original
    assert statuses == [200, 200]
    (s1, e1), (s2, e2) = sorted(spans)
    assert s2 >= e1, "two predictions overlapped"
    assert any(q["running"] == 1 and q["waiting"] == 1 for q in queues), queues


def test_jobs_for_listed_and_uploaded_cases(client, files):
    cases = client.get("/api/cases").json()["cases"]
    assert [c["id"] for c in cases] == ["BraTS2021_00000"]
    r = client.get(cases[0]["images"]["flair"]["url"])
    assert r.status_code == 200 and r.content == files["flair"].read_bytes()
    assert client.get("/api/cases/BraTS2021_00000/images/seg").status_code == 404
    assert client.get("/api/cases/..%2F..%2Fetc/images/t1").status_code == 404
    assert client.post("/api/jobs", params={"case": "/etc/passwd"}).status_code == 404
    for params, kwargs in (({"case": "BraTS2021_00000"}, {}), ({}, {"files": upload(files)})):
        r = client.post("/api/jobs", params=params, **kwargs)
        assert r.status_code == 202, r.text
        job = r.json()
        for _ in range(300):
            job = client.get(f"/api/jobs/{job['id']}").json()
            if job["state"] in ("done", "error"):
                break
            time.sleep(0.1)
        assert job["state"] == "done", job
        result = job["result"]
        assert (
            result["labels"] == [0, 4] and result["volumes_ml"]["ET"] > 0 and result["volumes_ml"]["NCR"] == 0
        )
        assert result["volumes_ml"]["WT"] == result["volumes_ml"]["ET"]
        assert len(result["centre_mm"]) == 3 and result["legend"][2] == {
            "label": 4,
            "name": "ET",
            "rgb": [255, 217, 0],
        }
        seg = client.get(job["download"])
        assert seg.status_code == 200 and read_nifti(seg.content).shape == SHAPE
    assert job["download_name"] == "segmentation.nii.gz"


def test_busy_queue_is_refused(client, app, files):
    st = app.state.serve
    old, st.max_queue = st.max_queue, 0
    try:
        r = client.post("/api/predict", files=upload(files))
    finally:
        st.max_queue = old
    assert r.status_code == 503 and "busy" in r.json()["error"] and r.headers["retry-after"]


def test_uncompressed_upload(client, files):
    plain = {m: (f"{m}.nii", nib.load(str(p)).to_bytes()) for m, p in files.items()}
    r = client.post("/api/predict", files=plain)
    assert r.status_code == 200, r.text
    assert read_nifti(r.content).shape == SHAPE


def test_page_and_static(client):
    r = client.get("/")
    assert (
        r.status_code == 200
        and "niivue.umd.js" in r.text
        and "default-src 'self'" in r.headers["content-security-policy"]
    )
    js = client.get("/static/niivue/niivue.umd.js")
    assert js.status_code == 200 and len(js.content) < 5 * 2**20
    assert client.get("/static/niivue/LICENSE").status_code == 200
    assert "http://" not in r.text and "https://" not in r.text
