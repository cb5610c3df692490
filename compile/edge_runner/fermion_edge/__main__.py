"""`python -m fermion_edge BUNDLE predict INPUT.csv`: one predicted class per input row, one per line.

`python -m fermion_edge BUNDLE verify` checks the bundle and prints its manifest. The signature is
checked before the model is loaded; `--trusted-key HEX` (or a file holding it) also pins the signer.
Exit status: 0 done, 2 bad usage or input, 3 the bundle was refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .archive import BundleRefused, open_bundle
from .rows import BadInput, read_rows


def _trusted(value: str | None) -> bytes | None:
    if value is None:
        return None
    text = Path(value).read_text().strip() if Path(value).is_file() else value.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SystemExit("--trusted-key must be a 32-byte Ed25519 public key in hex (or a file holding it)")
    return key


def predict(bundle_path: Path, input_path: Path, trusted: bytes | None) -> list[str]:
    """Verify the bundle, then the predicted class of every row of the CSV file."""
    bundle = open_bundle(bundle_path, trusted)
    import onnxruntime as ort  # only once the bundle is proven

    contract = bundle.manifest["contract"]
    x = read_rows(input_path, int(contract["input"]["shape"][-1]))
    options = ort.SessionOptions()
    if bundle.manifest["model"]["format"] == "ort":
        options.add_session_config_entry("session.load_model_format", "ORT")
    session = ort.InferenceSession(bundle.model, options, providers=["CPUExecutionProvider"])
    (logits,) = session.run([contract["output"]["name"]], {contract["input"]["name"]: x})
    labels = contract["output"].get("labels") or []
    return [labels[i] if i < len(labels) else str(int(i)) for i in logits.argmax(axis=1)]


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m fermion_edge", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("command", choices=["predict", "verify"])
    parser.add_argument("input", type=Path, nargs="?", help="CSV of feature rows (predict)")
    parser.add_argument("--trusted-key", help="the signer's public key (hex, or a file holding it)")
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            bundle = open_bundle(args.bundle, _trusted(args.trusted_key))
            print(json.dumps({"verified": True, "key_id": bundle.key_id, "manifest": bundle.manifest}, indent=2))
            return 0
        if args.input is None:
            parser.error("predict needs an input CSV file")
        for label in predict(args.bundle, args.input, _trusted(args.trusted_key)):
            print(label)
    except BundleRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    except (BadInput, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
