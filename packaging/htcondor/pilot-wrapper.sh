#!/usr/bin/env bash
# HTCondor's executable for gridpilot pilots (packaging/htcondor/pilot.sub): runs the
# launcher that came with the job's input files, with the pilot's work dir in the job's
# scratch dir, so everything the pilot writes goes away with the job. Arguments are the
# options of `pilot` (--url, --token-file, ...). The launcher verifies the pyz, forwards
# HTCondor's signals to the pilot and exits with the pilot's code.
set -euo pipefail

scratch="${_CONDOR_SCRATCH_DIR:-$PWD}"
export GRIDPILOT_PYZ="${GRIDPILOT_PYZ:-$scratch/gridpilot-pilot.pyz}"
mkdir -p "$scratch/pilot"
exec bash "$scratch/pilot-launcher.sh" pilot --workdir "$scratch/pilot" "$@"
