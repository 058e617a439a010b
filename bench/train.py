#!/usr/bin/env python3
"""Train and score one configuration, printing the validation curve: the accuracy runs of docs/results.md.

    python bench/train.py OUT_DIR '{"solver": "fomaml", "meta_batch": 8}' [--threads 1]

The JSON holds RunConfig fields (what `omnimeta run` takes as options); fields
left out take the solver's defaults, exactly as on the command line. Runs in
docs/results.md used --threads 1 with two runs side by side on the 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("config", help="JSON object of RunConfig fields")
    parser.add_argument("--threads", type=int, default=None, help="as omnimeta run --threads")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    from l2l_omniglot import RunCallbacks, load_omniglot, resolve_config, train_and_evaluate
    from l2l_omniglot.threads import use_threads

    use_threads(args.threads)  # the thread policy of `omnimeta run --threads` (None: its default)

    overrides = json.loads(args.config)
    config = resolve_config(overrides.pop("solver", "fomaml"), **overrides)
    start = time.perf_counter()

    class ValidationCurve(RunCallbacks):
        def on_validation(self, iteration, score):
            print(f"{args.out_dir} it={iteration} t={time.perf_counter() - start:.0f}s val={score.accuracy:.4f}",
                  flush=True)

    result = train_and_evaluate(config, load_omniglot(args.data_root), args.out_dir, force=True,
                                callbacks=ValidationCurve())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
