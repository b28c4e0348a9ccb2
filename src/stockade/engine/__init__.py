"""One submission: files -> compile (cached) -> run each test -> judge -> verdict.

    >>> from stockade.engine import Engine, Submission, TestCase
    >>> engine = Engine(Sandbox(), Catalog.load(), cache_dir="/var/cache/stockade/compile")
    >>> result = await engine.run(Submission("c", source=C_SOURCE,
    ...                                      tests=(TestCase(b"1 2\\n", b"3\\n"),)))
    >>> result.verdict
    <Verdict.accepted: 'accepted'>
"""

from stockade.engine.archive import ArchiveLimits
from stockade.engine.cache import CompileCache
from stockade.engine.judging import normalize, outputs_match
from stockade.engine.model import Submission, SubmissionResult, TestCase, TestResult, Verdict
from stockade.engine.pipeline import Engine, default_cache_dir, standing_mounts

__all__ = [
    "ArchiveLimits", "CompileCache", "Engine", "Submission", "SubmissionResult", "TestCase",
    "TestResult", "Verdict", "default_cache_dir", "normalize", "outputs_match", "standing_mounts",
]
