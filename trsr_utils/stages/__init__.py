"""The chain's stages, one module each, in notebook order: what each computes, reads and depends on.

Each module declares its :class:`~trsr_utils.store.stages.Stage` (the stages it reads are the upstream modules'
stage objects, so the import graph is the chain), runs it into the run directory and reads its result back:

    prepare (01) <- chunking (02) <- summarize (03, 04) <- comparison (05), sft (06) <- evaluation (07)
    <- ablation (08), beyond (09)

Adding a stage is one new module here and one name in the import below. The mechanism they share (fingerprints,
result folders, ``require``, ``status``) is :mod:`trsr_utils.store.stages`; its functions are re-exported here so
that a notebook needs one import (``from trsr_utils import stages``), and importing this package makes every
stage known.
"""

# In the chain's order: importing a stage's module registers it, after the stages it reads (`python -m trsr_utils status` and the
# plan list them in this order).
from trsr_utils.stages import prepare  # noqa: F401, I001  (01)
from trsr_utils.stages import chunking  # noqa: F401  (02)
from trsr_utils.stages import summarize  # noqa: F401  (03, 04)
from trsr_utils.stages import comparison  # noqa: F401  (05)
from trsr_utils.stages import sft  # noqa: F401  (06)
from trsr_utils.stages import evaluation  # noqa: F401  (07)
from trsr_utils.stages import ablation  # noqa: F401  (08)
from trsr_utils.stages import beyond  # noqa: F401  (09)
from trsr_utils.store.stages import (ADDED, ADDED_OUTSIDE_FINGERPRINTS, CODE, DIGEST_CHARS, INACTIVE,  # noqa: F401
                                     RECORD, STAGES, MissingResult, Stage, closest, command, config_digest, diff,
                                     finish, fingerprint, for_notebook, format_status, get, home, inputs, is_complete,
                                     parts, record, record_results, require, result_dir, settings, status)
from trsr_utils.core.hashing import canonical, digest, file_digest  # noqa: F401
