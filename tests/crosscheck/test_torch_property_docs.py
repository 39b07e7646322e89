"""The property test of a user's own PyTorch adapter in docs/crosscheck.md runs as written, and catches a planted
bug (the erf GELU where the claim is the tanh one) within 60 s. Needs torch (the torch stage of .ci/run)."""

import time

import pytest
from test_testing_references import documented_property_test, run_as_a_module

pytest.importorskip("torch")


def test_the_documented_pytorch_property_test_runs_and_catches_a_planted_bug(tmp_path):
    from hypothesis import Phase, settings

    code = documented_property_test("The same for your own PyTorch adapter")
    previous = settings.default
    try:
        # the code's own @settings inherit from the profile loaded when it is imported: 25 examples, and for the
        # planted bug no shrinking (catching it is the first failing example; shrinking only makes it small)
        settings.register_profile("docs-torch", parent=previous, max_examples=25)
        settings.load_profile("docs-torch")
        run_as_a_module(code, tmp_path, "doc_torch_adapter").test_my_torch_adapter_matches_the_reference()
        start = time.monotonic()
        wrong = code.replace('approximate="tanh"', 'approximate="none"')
        assert wrong != code
        settings.register_profile("docs-torch-bug", parent=previous, max_examples=25,
                                  phases=[Phase.explicit, Phase.reuse, Phase.generate])
        settings.load_profile("docs-torch-bug")
        with pytest.raises(AssertionError):
            run_as_a_module(wrong, tmp_path, "doc_torch_adapter_bug").test_my_torch_adapter_matches_the_reference()
        assert time.monotonic() - start < 60
    finally:
        settings.register_profile("docs-torch-restore", parent=previous)
        settings.load_profile("docs-torch-restore")
