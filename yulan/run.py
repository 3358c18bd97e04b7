"""`python -m yulan.run --run-dir DIR --stage STAGE`: the job entry point's stable name. Every planned job and sbatch
script names it, and the code snapshots of earlier runs hold it too, so a resubmit runs in any of them; the work is
done by yulan.cli.job."""

import sys

from yulan.cli.job import main

if __name__ == "__main__":
    sys.exit(main())
