"""Station configuration: bundled profile, validation messages, TOML errors."""

from pathlib import Path

import pytest

from rig.config import ConfigError, load_config


def test_bundled_sim_profile_is_the_default() -> None:
    cfg = load_config()
    assert cfg.is_simulated and cfg.scan.columns * cfg.scan.rows == 10
    assert cfg.camera.width == 3504 and cfg.camera.height == 3120
    assert cfg.detector.t_low is None and cfg.detector.t_high is None  # model card decides
    assert load_config("sim") == cfg


@pytest.mark.parametrize("toml,expected", [
    ("[camera]\nexposure_us = -5\n", "camera.exposure_us = -5: Input should be greater than 0"),
    ("[camera]\nbackend = 'gige'\n", "camera.backend = 'gige': Input should be 'sim', 'pylon' or"),
    ("[scan]\ncolums = 2\n", "scan.colums: unknown key"),
    ("[detector]\nt_low = 0.9\nt_high = 0.5\n", "t_low (0.9) must not exceed t_high (0.5)"),
    ("[stage]\nx_limits_mm = [10, 0]\n", "x_limits_mm: lower limit 10.0 must be below"),
    ("[light]\nfacet_levels = [1, 2]\n", "facet_levels must be 12 integers"),
    ("[camera]\nwidth = 3505\n", "camera.width = 3505: Input should be a multiple of 2"),
    ("[scan]\nstates = 4\n", "states = 4: every RoI is captured in all 6 illumination states"),
    ("[paths]\nlogs = 'x'\n", "paths.logs: unknown key"),
])
def test_bad_values_name_key_value_and_rule(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "station.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[camera\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_partial_file_keeps_defaults(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text("[camera]\nbackend = 'pylon'\nserial = '40012345'\n")
    cfg = load_config(path)
    assert cfg.camera.serial == "40012345" and cfg.scan.rows == 5 and not cfg.is_simulated
