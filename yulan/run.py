"""`python -m yulan.run`: the job entry point under the name that run directories made before `yulan.cli.job`
existed still name in their sbatch scripts and plans (a resubmit of such a run goes through here)."""

import sys

from yulan.cli.job import main

if __name__ == "__main__":
    sys.exit(main())
