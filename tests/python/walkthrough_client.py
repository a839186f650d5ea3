"""Send image files to one gate of an oodgate server; print one JSON line per verdict.

Stubs first (once), from the repository's proto folder:

    python -m grpc_tools.protoc -I proto/proto --python_out=stubs \
        --grpc_python_out=stubs oodgate/v1/detector.proto
    PYTHONPATH=stubs python walkthrough_client.py --gate garments shirt.png boot.jpg
"""

import argparse
import json
from pathlib import Path

import grpc
from oodgate.v1 import detector_pb2 as pb
from oodgate.v1 import detector_pb2_grpc as rpc

BATCH = 64  # images per request (the server allows up to server.max_images_per_request)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", default="127.0.0.1:50051", help="the server's gRPC host:port")
    parser.add_argument("--gate", required=True, help="the gate's name, as in [gates.<name>]")
    parser.add_argument("files", nargs="+", type=Path, help="PNG or JPEG files")
    args = parser.parse_args()

    stub = rpc.DetectorStub(grpc.insecure_channel(args.addr))
    info = stub.GetModelInfo(pb.GetModelInfoRequest(gate=args.gate), timeout=30)
    print(json.dumps({"gate": info.gate, "model": info.model_name, "classes": list(info.classes),
                      "index_size": info.index_size, "default_threshold": info.default_threshold}))

    for start in range(0, len(args.files), BATCH):
        files = args.files[start:start + BATCH]
        images = [pb.Image(id=str(f), encoded=f.read_bytes()) for f in files]
        response = stub.Detect(pb.DetectRequest(gate=args.gate, images=images), timeout=60)
        for verdict in response.verdicts:
            outcome = verdict.WhichOneof("outcome")
            line = {"id": verdict.id, "outcome": outcome}
            if outcome == "error":
                line["error"] = verdict.error.message
            else:
                said = verdict.classify if outcome == "classify" else verdict.reject.would_classify_as
                line.update(class_name=said.class_name, probability=round(said.probability, 4),
                            lof_score=verdict.lof.score, lof_threshold=verdict.lof.threshold)
            if outcome == "reject":
                # The reference images nearest to this one, nearest first.
                line["neighbours"] = [{"training_id": n.training_id, "label_name": n.label_name,
                                       "distance": round(n.distance, 4)}
                                      for n in verdict.reject.neighbours]
            print(json.dumps(line))


if __name__ == "__main__":
    main()
