"""Ray job entrypoint: ``embedforge synthesize`` as a script for ``ray job submit``.

Run: ``ray job submit --working-dir . -- python jobs/synthesize.py --config jobs/configs/synthesize_tiny.yaml``
(or locally, ``python jobs/synthesize.py --config ...``). It joins the cluster it is submitted to.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedforge.config import load_config
from embedforge.synthesis.synthesize import SynthesizeConfig, run_synthesize
from embedforge.synthesis.summary import print_summary

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    config = load_config(parser.parse_args().config, SynthesizeConfig)
    stats = run_synthesize(config)
    print_summary(stats, config.output_dir)
