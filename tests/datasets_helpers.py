"""Miniature copies of the real dataset sources (same archive names, folder layout and file formats,
a few images each) and a local HTTP server on 127.0.0.1 that serves them, with Range support and
injectable faults (dropped connections, ignored Range, 404), for the tests/test_datasets_*.py files."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from PIL import Image

from pipeline.data.download import default_download_params


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jpeg(width: int, height: int, shade: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (shade % 256, 80, 160)).save(buf, format="JPEG")
    return buf.getvalue()


def make_zip(entries: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def make_tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


# --- local HTTP server --------------------------------------------------------------------------

class FileServer:
    """Serves `files` (URL path -> bytes) on 127.0.0.1 with HTTP Range; records every request.

    Faults: `drop_after[path] = n` sends n bytes of the next GET of `path`, then closes the connection
    (once); `ignore_range` answers 200 with the whole file even when a Range is asked.
    """

    MAX_REQUESTS = 500  # bound on the traffic a test can generate

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str, str | None, int]] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, path: str, data: bytes) -> str:
        """Serve `data` at `path`; returns its full URL."""
        self.files["/" + path.lstrip("/")] = data
        return self.url + "/" + path.lstrip("/")

    def gets(self, path: str) -> list[tuple[str | None, int]]:
        """(Range header, status) of every GET of `path`."""
        return [(rng, status) for method, p, rng, status in self.requests if method == "GET" and p == "/" + path.lstrip("/")]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args):
                pass

            def _record(self, status):
                with server._lock:
                    server.requests.append((self.command, self.path, self.headers.get("Range"), status))

            def do_HEAD(self):
                self.do_GET(body=False)

            def do_GET(self, body=True):
                if len(server.requests) >= server.MAX_REQUESTS:
                    self._record(503)
                    self.send_error(503)
                    return
                data = server.files.get(self.path)
                if data is None:
                    self._record(404)
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self._record(416)
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self._record(status)
                payload = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                cut = server.drop_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        return Handler

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def serving():
    with FileServer() as server:
        yield server


# --- registry and params for tests ----------------------------------------------------------------

def write_registry(path: Path, sources: dict[str, dict]) -> Path:
    """`sources`: name -> {"used_by": [...], "files": [{"name", "data", "sha256"?, "size"?, "extract"?, ...}]}.

    The registry URLs point at a closed port on 127.0.0.1: tests reach the server through
    `download.mirrors` only, and nothing ever leaves the loopback interface.
    """
    doc = {"version": 1, "sources": {}}
    for name, src in sources.items():
        files = []
        for f in src["files"]:
            entry = {"name": f["name"], "urls": [f"http://127.0.0.1:9/{name}/{f['name']}"],
                     "size": f.get("size"), "sha256": f.get("sha256", sha256(f["data"])),
                     "extract": f.get("extract", f["name"].endswith(".zip"))}
            if "sha256_prefix" in f:
                entry["sha256_prefix"] = f["sha256_prefix"]
            files.append(entry)
        doc["sources"][name] = {"description": name, "used_by": src["used_by"], "files": files}
    path.write_text(yaml.safe_dump(doc))
    return path


def publish(server: FileServer, sources: dict[str, dict]) -> dict[str, list[str]]:
    """Serve every file of `sources` under /<source>/<name>; returns the mirrors mapping for params."""
    for name, src in sources.items():
        for f in src["files"]:
            server.add(f"{name}/{f['name']}", f["data"])
    return {name: [f"{server.url}/{name}"] for name in sources}


def coco_mini_pictures(coco_mini: Path, n: int, split: str = "val2017") -> list[dict]:
    """The first `n` captioned coco-mini images of `split` (id order): JPEG bytes, size and real captions,
    for miniatures of the other formats that should hold real photographs."""
    caps = json.loads((coco_mini / "annotations" / f"captions_{split}.json").read_text())
    by_image: dict[int, list[tuple[int, str]]] = {}
    for a in caps["annotations"]:
        by_image.setdefault(a["image_id"], []).append((a["id"], a["caption"].strip()))
    out = []
    for im in sorted(caps["images"], key=lambda im: im["id"]):
        if im["id"] in by_image and len(out) < n:
            data = (coco_mini / split / im["file_name"]).read_bytes()
            with Image.open(io.BytesIO(data)) as img:
                size = img.size
            out.append({"data": data, "size": size, "captions": [t for _, t in sorted(by_image[im["id"]])]})
    if len(out) < n:
        raise ValueError(f"{coco_mini / 'annotations' / f'captions_{split}.json'}: {len(out)} captioned images, "
                         f"{n} asked for")
    return out


def download_params(tmp_path: Path, registry: Path, mirrors: dict, **overrides) -> dict:
    p = default_download_params()
    p.update(dir=str(tmp_path / "downloads"), registry=str(registry), lock_file=str(tmp_path / "registry.lock.json"),
             mirrors=mirrors, retries=0, retry_wait=0.0, timeout=10.0, progress=False)
    p.update(overrides)
    return p


# --- MIRFlickr-25K --------------------------------------------------------------------------------

MIR_LABELS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
              "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
              "tree", "water")
MIR_R1 = ("baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people", "portrait", "river",
          "sea", "tree")


def mirflickr_sources(n: int = 14, pictures: list[dict] | None = None) -> tuple[dict, dict]:
    """mirflickr25k.zip + mirflickr25k_annotations_v080.zip with `n` images, and the facts to check.
    `pictures` (coco_mini_pictures) replaces the generated images by real photographs.

    Image 3 has no label (but is listed in baby_r1.txt, which must not count), image 5 has no tag,
    image 7 only rare tags (not in common_tags.txt): with the default rules all three are dropped.
    """
    common = ["sky", "clouds", "sea", "dog", "portrait", "night", "bw", "tree"]
    tags, labels = {}, {name: [] for name in MIR_LABELS}
    for i in range(1, n + 1):
        tags[i] = [common[i % len(common)], common[(i * 3) % len(common)], "canon"]
        if i != 3:
            labels[MIR_LABELS[i % 24]].append(i)
            labels[MIR_LABELS[(i * 5) % 24]].append(i)
    tags[5] = []
    tags[7] = ["nikon", "canon"]
    images = {f"mirflickr/im{i}.jpg": pictures[i - 1]["data"] if pictures else jpeg(10 + i, 8 + (i % 3), i * 9)
              for i in range(1, n + 1)}
    meta = {f"mirflickr/meta/tags/tags{i}.txt": "".join(t + "\n" for t in tags[i]) for i in range(1, n + 1)}
    raw = {f"mirflickr/meta/tags_raw/tags{i}.txt": "".join(t.upper() + "\n" for t in tags[i]) for i in range(1, n + 1)}
    exif = {f"mirflickr/meta/exif/exif{i}.txt": "-Model\nCanon\n" for i in range(1, n + 1)}
    doc = {"mirflickr/doc/common_tags.txt": "".join(f"{t} {100 - k}\n" for k, t in enumerate(common)),
           "mirflickr/README.txt": "MIRFLICKR-25000\n"}
    ann = {f"{name}.txt": "".join(f"{i}\n" for i in ids) for name, ids in labels.items()}
    ann.update({f"{name}_r1.txt": "".join(f"{i}\n" for i in labels[name][:1]) for name in MIR_R1})
    ann["baby_r1.txt"] += "3\n"
    ann["README.txt"] = "Annotations v080\n"
    sources = {"mirflickr25k": {"used_by": ["mirflickr"], "files": [
        {"name": "mirflickr25k.zip", "data": make_zip({**images, **meta, **raw, **exif, **doc})},
        {"name": "mirflickr25k_annotations_v080.zip", "data": make_zip(ann)}]}}
    facts = {"n": n, "tags": tags, "labels": labels, "common": set(common), "dropped": {3, 5, 7},
             "sizes": {i: pictures[i - 1]["size"] if pictures else (10 + i, 8 + i % 3) for i in range(1, n + 1)}}
    return sources, facts


# --- NUS-WIDE -------------------------------------------------------------------------------------

NUS_CONCEPTS = ("animal", "beach", "clouds", "person", "sky", "water")


def nuswide_sources(n: int = 30, pictures: list[dict] | None = None) -> tuple[dict, dict]:
    """Groundtruth.zip, NUS_WID_Tags.zip, ImageList.zip, ConceptsList.zip for `n` images, and the
    user's image folder (rel path -> bytes; real photographs with `pictures`, see coco_mini_pictures).
    Frequencies: sky > clouds > water = person > others."""
    pattern = {"sky": lambda i: i % 2 == 0, "clouds": lambda i: i % 3 == 0, "water": lambda i: i % 5 == 0,
               "person": lambda i: i % 5 == 1, "animal": lambda i: i == 7, "beach": lambda i: i in (7, 11)}
    labels = {c: [int(pattern[c](i)) for i in range(n)] for c in NUS_CONCEPTS}
    tag_names = ["sunset", "blue", "red", "dog", "city", "nature", "night", "green"]
    tags = [[int((i + k) % 4 == 0 and i % 7 != 3) for k in range(len(tag_names))] for i in range(n)]
    concept_dirs = ["actor", "airport", "animal"]
    rel = [f"{concept_dirs[i % 3]}\\{i + 1:04d}_{1000 + 37 * i}.jpg" for i in range(n)]
    ground = {f"Groundtruth/AllLabels/Labels_{c}.txt": "".join(f"{v}\r\n" for v in labels[c]) for c in NUS_CONCEPTS}
    ground.update({f"Groundtruth/TrainTestLabels/Labels_{c}_Train.txt": "".join(f"{v}\n" for v in labels[c][: n // 2])
                   for c in NUS_CONCEPTS})
    tag_files = {
        "NUS_WID_Tags/TagList1k.txt": "".join(t + "\n" for t in tag_names),
        "NUS_WID_Tags/AllTags1k.txt": "".join("\t".join(map(str, row)) + "\t\r\n" for row in tags),
        "NUS_WID_Tags/All_Tags.txt": "".join(f"{1000 + 37 * i} " + " ".join(t for t, v in zip(tag_names, tags[i]) if v)
                                             + "\n" for i in range(n)),
        "NUS_WID_Tags/Final_Tag_List.txt": "".join(t + "\n" for t in tag_names),
    }
    image_list = {"ImageList/Imagelist.txt": "".join(r + "\n" for r in rel),
                  "ImageList/TrainImagelist.txt": "".join(f"C:\\ImageData\\Flickr\\{r}\n" for r in rel[: n // 2]),
                  "ImageList/TestImagelist.txt": "".join(f"C:\\ImageData\\Flickr\\{r}\n" for r in rel[n // 2:])}
    concepts = {"ConceptsList/Concepts81.txt": "".join(c + "\n" for c in NUS_CONCEPTS)}
    sources = {"nuswide": {"used_by": ["nuswide"], "files": [
        {"name": "Groundtruth.zip", "data": make_zip(ground)},
        {"name": "NUS_WID_Tags.zip", "data": make_zip(tag_files)},
        {"name": "ImageList.zip", "data": make_zip(image_list)},
        {"name": "ConceptsList.zip", "data": make_zip(concepts)}]}}
    images = {r.replace("\\", "/"): pictures[i]["data"] if pictures else jpeg(12 + i % 4, 9, i) for i, r in enumerate(rel)}
    sizes = [pictures[i]["size"] if pictures else (12 + i % 4, 9) for i in range(n)]
    facts = {"n": n, "labels": labels, "tag_names": tag_names, "tags": tags, "rel": rel, "images": images,
             "sizes": sizes}
    return sources, facts


# --- MS-COCO 2014 + Karpathy (built from the real coco-mini) --------------------------------------

def coco2014_sources(coco_mini: Path, per_set: int = 6, flickr_pictures: list[dict] | None = None) -> tuple[dict, dict]:
    """train2014.zip, val2014.zip, annotations_trainval2014.zip (COCO 2014 names and layout) holding
    `per_set` real coco-mini images of each 2017 set, and caption_datasets.zip with a Karpathy
    dataset_coco.json over them (plus Flickr files, see flickr_karpathy, given `flickr_pictures`)."""
    zips = {}
    ann_files = {}
    entries = []
    for year17, year14 in (("train2017", "train2014"), ("val2017", "val2014")):
        caps = json.loads((coco_mini / "annotations" / f"captions_{year17}.json").read_text())
        inst = json.loads((coco_mini / "annotations" / f"instances_{year17}.json").read_text())
        with_caps = {a["image_id"] for a in caps["annotations"]}
        images = [im for im in sorted(inst["images"], key=lambda im: im["id"]) if im["id"] in with_caps][:per_set]
        ids = {im["id"] for im in images}
        renamed = [dict(im, file_name=f"COCO_{year14}_{im['id']:012d}.jpg") for im in images]
        members = {f"{year14}/{im['file_name']}": (coco_mini / year17 / src["file_name"]).read_bytes()
                   for im, src in zip(renamed, images)}
        zips[f"{year14}.zip"] = make_zip(members)
        ann_files[f"annotations/captions_{year14}.json"] = json.dumps(
            {"info": {}, "licenses": [], "images": renamed,
             "annotations": [a for a in caps["annotations"] if a["image_id"] in ids]})
        ann_files[f"annotations/instances_{year14}.json"] = json.dumps(
            {"info": {}, "licenses": [], "images": renamed, "categories": inst["categories"],
             "annotations": [a for a in inst["annotations"] if a["image_id"] in ids]})
        for im in renamed:
            texts = [a["caption"] for a in caps["annotations"] if a["image_id"] == im["id"]]
            entries.append({"filepath": year14, "filename": im["file_name"], "cocoid": im["id"], "imgid": len(entries),
                            "sentids": [], "sentences": [{"raw": t, "tokens": t.lower().split(), "imgid": len(entries),
                                                          "sentid": k} for k, t in enumerate(texts)]})
    karpathy_split = ["test", "val", "restval", "train", "train", "test"] * 2
    for e, s in zip(entries, karpathy_split):
        e["split"] = s
    zips["annotations_trainval2014.zip"] = make_zip(ann_files)
    flickr = flickr_karpathy(flickr_pictures)
    caption_zip = make_zip({"dataset_coco.json": json.dumps({"images": entries, "dataset": "coco"}),
                            "dataset_flickr30k.json": json.dumps(flickr["flickr30k"]["json"]),
                            "dataset_flickr8k.json": json.dumps(flickr["flickr8k"]["json"])})
    sources = {"coco2014": {"used_by": ["coco2014"], "files": [
                   {"name": name, "data": zips[name]} for name in ("train2014.zip", "val2014.zip",
                                                                  "annotations_trainval2014.zip")]},
               "karpathy": {"used_by": ["coco2014", "flickr30k", "flickr8k"], "files": [
                   {"name": "caption_datasets.zip", "data": caption_zip}]}}
    return sources, {"karpathy": entries, "annotations": ann_files, "flickr": flickr}


def flickr_karpathy(pictures: list[dict] | None = None) -> dict:
    """Karpathy-format dataset_flickr30k.json / dataset_flickr8k.json for a few images, and the images:
    generated, or with `pictures` (12, coco_mini_pictures) real photographs with their real captions."""
    out = {}
    pictures = list(pictures or [])
    for kind, names, splits in (
            ("flickr30k", [f"{1000092795 + 7 * i}.jpg" for i in range(7)],
             ["train", "train", "val", "test", "train", "test", "val"]),
            ("flickr8k", [f"{2513260012 + i}_03d33305c{i}.jpg" for i in range(5)],
             ["train", "test", "val", "train", "train"])):
        images = []
        real, pictures = pictures[:len(names)], pictures[len(names):]
        for i, (name, split) in enumerate(zip(names, splits)):
            texts = real[i]["captions"][:5] if real else [f"A {kind} photo number {i} caption {k}." for k in range(5)]
            sents = [{"raw": t, "tokens": t.lower().rstrip(".").split(), "imgid": i, "sentid": 5 * i + k}
                     for k, t in enumerate(texts)]
            images.append({"filename": name, "imgid": i, "split": split, "sentids": [5 * i + k for k in range(len(texts))],
                           "sentences": sents})
        out[kind] = {"json": {"images": images, "dataset": kind},
                     "images": {name: real[i]["data"] if real else jpeg(20 + i, 14 + i, 30 * i)
                                for i, name in enumerate(names)},
                     "sizes": {name: real[i]["size"] if real else (20 + i, 14 + i) for i, name in enumerate(names)}}
    return out
