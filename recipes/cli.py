"""The command line every recipe shares."""

from __future__ import annotations

import argparse
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def recipe_parser(name: str, description: str, model_suffix: str | None = ".keras") -> argparse.ArgumentParser:
    """--quick, --output-dir (recipes/output/NAME), --data-dir and, unless
    `model_suffix` is None, --model-path (saved_models/NAME + suffix)."""
    parser = argparse.ArgumentParser(prog=f"python -m recipes.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help="a short run, for tests")
    parser.add_argument("--output-dir", type=pathlib.Path, default=REPO_ROOT / "recipes" / "output" / name,
                        help="where the pictures go")
    parser.add_argument("--data-dir", type=pathlib.Path, default=None,
                        help="the TFDS data directory (default: TFDS's, ~/tensorflow_datasets)")
    if model_suffix is not None:
        parser.add_argument("--model-path", type=pathlib.Path,
                            default=REPO_ROOT / "saved_models" / f"{name}{model_suffix}",
                            help="where the trained result is saved")
    return parser
