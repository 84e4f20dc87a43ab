"""Kaggle inference with a freesound-tf bundle (copied into the bundle as kaggle_infer.py).

Installs the bundle's wheels offline (``pip install --no-index``) unless this freesound-tf version is
already installed, scores every clip of the test folder with the bundle's SavedModel and writes a
submission with a row for every test clip:

    python /kaggle/input/<dataset>/kaggle_infer.py [--test-dir DIR] [--sample-submission CSV] [--out submission.csv]

Runs before freesound-tf is installed, so it imports only the standard library until then.
"""
import argparse
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

BUNDLE = Path(__file__).resolve().parent
COMPETITION_INPUT = Path("/kaggle/input")


def ensure_installed(version: str) -> None:
    try:
        if metadata.version("freesound-tf") == version:
            return
    except metadata.PackageNotFoundError:
        pass
    print(f"installing freesound-tf {version} from {BUNDLE / 'wheels'} (offline)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(BUNDLE / "wheels"),
                    "--disable-pip-version-check", f"freesound-tf=={version}"], check=True)


def find_test_dir() -> Path:
    """The competition's test folder under /kaggle/input (FAT2019 ``test/``, FAT2018 ``audio_test/``)."""
    found = sorted(p for name in ("test", "audio_test") for p in COMPETITION_INPUT.glob(f"*/{name}") if p.is_dir())
    if not found:
        sys.exit(f"no test/ or audio_test/ folder under {COMPETITION_INPUT}; pass --test-dir")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-dir", type=Path, help="folder of test clips (default: the competition's)")
    parser.add_argument("--sample-submission", type=Path,
                        help="CSV whose fname column sets the rows (default: sample_submission.csv next to the "
                             "test folder if present, else every audio file of the test folder)")
    parser.add_argument("--out", type=Path, default=Path("submission.csv"), help="CSV to write")
    args = parser.parse_args()
    info = json.loads((BUNDLE / "bundle.json").read_text())
    ensure_installed(info["freesound_tf"])
    test_dir = args.test_dir or find_test_dir()
    sample = args.sample_submission
    if sample is None and (test_dir.parent / "sample_submission.csv").exists():
        sample = test_dir.parent / "sample_submission.csv"

    from freesound_tf.kaggle import write_kaggle_submission

    write_kaggle_submission(BUNDLE / "model", test_dir, args.out, sample)


if __name__ == "__main__":
    main()
