"""Test-wide fixtures. Model fixtures live in fixtures_models.py (loaded once per session)."""
from fixtures_models import minilm, minilm_batch, tiny_gpt2, tiny_llama, torch_threads  # noqa: F401
