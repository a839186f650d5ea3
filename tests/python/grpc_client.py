"""A Python client of oodgate, as another service would write one.

Stubs are generated from proto/oodgate/v1/detector.proto with grpcio-tools at run
time, then the script calls GetModelInfo, the unary Detect and the DetectStream
with MNIST test digits (from OODGATE_DATA_DIR) and a malformed image, and checks
the verdicts. Exits non-zero with a message on any mismatch.

    .venv/bin/python tests/python/grpc_client.py --addr 127.0.0.1:50051
"""

import argparse
import gzip
import os
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto" / "proto"


def generate_stubs(out: Path):
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main([
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        "oodgate/v1/detector.proto",
    ])
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, str(out))
    from oodgate.v1 import detector_pb2, detector_pb2_grpc

    return detector_pb2, detector_pb2_grpc


def mnist_test(n: int):
    data = os.environ.get("OODGATE_DATA_DIR")
    if not data:
        sys.exit("OODGATE_DATA_DIR must name the dataset mirror")
    folder = Path(data) / "mnist"
    images = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]
    labels = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:]
    return [(images[i * 784:(i + 1) * 784], labels[i]) for i in range(n)]


def check(condition, message):
    if not condition:
        sys.exit(f"python client: FAILED: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", required=True, help="host:port of the server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        pb, rpc = generate_stubs(Path(out))
        channel = grpc.insecure_channel(args.addr)
        stub = rpc.DetectorStub(channel)

        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        check(info.k > 0 and info.index_size > 0, f"model info {info}")
        check(list(info.classes) == [str(d) for d in range(10)], f"classes {info.classes}")
        print(f"model {info.model_name} ({info.model_sha256[:12]}), k={info.k}, index {info.index_size}")

        digits = mnist_test(20)
        images = [pb.Image(id=f"d{i}", raw=pb.RawPixels(width=28, height=28, channels=1, pixels=px))
                  for i, (px, _) in enumerate(digits)]
        images.append(pb.Image(id="broken", raw=pb.RawPixels(width=28, height=28, channels=1, pixels=b"\0" * 10)))
        response = stub.Detect(pb.DetectRequest(images=images, source="python"), timeout=30)
        check([v.id for v in response.verdicts] == [im.id for im in images], "ids out of order")
        correct = 0
        for verdict, (_, label) in zip(response.verdicts, digits):
            kind = verdict.WhichOneof("outcome")
            check(kind in ("classify", "reject"), f"{verdict.id}: {kind}")
            check(verdict.lof.threshold != 0.0, f"{verdict.id}: no LOF evidence")
            if kind == "classify":
                correct += verdict.classify.class_index == label
        check(correct >= 18, f"only {correct} of 20 digits classified right")
        broken = response.verdicts[-1]
        check(broken.WhichOneof("outcome") == "error" and "784" in broken.error.message,
              f"broken image: {broken}")
        print(f"unary: {correct}/20 digits classified right; broken image: {broken.error.message}")

        def requests():
            for start in range(0, 20, 5):
                yield pb.DetectRequest(images=images[start:start + 5], source="python",
                                       threshold=pb.Threshold(contamination=0.01))

        streamed = [v for r in stub.DetectStream(requests(), timeout=60) for v in r.verdicts]
        check([v.id for v in streamed] == [im.id for im in images[:20]], "stream ids out of order")
        check(all(abs(v.lof.score - v.lof.threshold - v.lof.decision) < 1e-9 for v in streamed),
              "decision != score - threshold")

        try:
            stub.Detect(pb.DetectRequest(), timeout=30)
            check(False, "an empty batch was accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"empty batch: {e.code()}")
    print("python client: ok")


if __name__ == "__main__":
    main()
