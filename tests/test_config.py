from pathlib import Path

import pytest
import yaml

from brats.cli import main
from brats.config import (
    Config,
    ConfigError,
    config_reference_markdown,
    config_to_yaml,
    iter_config_fields,
    load_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo.yaml", "brats20_seed.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / name)
    assert isinstance(cfg, Config)
    assert cfg.data.root and cfg.output_dir


def test_seed_config_matches_the_article():
    cfg = load_config(ROOT / "configs" / "brats20_seed.yaml")
    assert cfg.data.modalities == ["flair", "t1ce", "t2"]
    assert cfg.patches.size == [128, 128] and cfg.patches.dim == 2
    assert cfg.model.arch == "Unet" and cfg.model.encoder.startswith("resnet")
    assert cfg.loss.name == "focal" and cfg.train.amp == "auto"
    assert cfg.data.naming == "2020"  # YAML string, kept as the Literal value


def test_unknown_key_names_dotted_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  rooot: /x\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "data.rooot" in msg and str(p) in msg and "data.root" in msg


def test_unknown_top_level_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("outptu_dir: x\n")
    with pytest.raises(ConfigError, match="outptu_dir"):
        load_config(p)


def test_wrong_type_names_key_type_and_value():
    with pytest.raises(ConfigError) as exc:
        load_config(ROOT / "configs" / "demo.yaml", ["train.lr=abc"])
    msg = str(exc.value)
    assert "train.lr" in msg and "float" in msg and "'abc'" in msg


def test_overrides_are_typed_and_nested():
    cfg = load_config(None, ["train.lr=3e-4", "data.root=/data/x", "patches.size=[64, 64]", "train.amp=off"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.data.root == "/data/x"
    assert cfg.patches.size == [64, 64]
    assert cfg.train.amp == "off"


def test_literal_choice_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'zscore'"):
        load_config(None, ["preprocess.normalization=zscor"])


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(None, ["train.epochs=true"])


def test_cross_field_check_patch_dims():
    with pytest.raises(ConfigError, match="patches.size"):
        load_config(None, ["patches.dim=3"])


def test_resolved_yaml_round_trips():
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["train.epochs=3"])
    again = load_config(None, [])
    data = yaml.safe_load(config_to_yaml(cfg))
    from brats.config import config_from_dict

    assert config_from_dict(data) == cfg
    assert again != cfg


def test_every_key_is_documented():
    undocumented = [k for k, _, _, doc, _ in iter_config_fields() if not doc.strip()]
    assert undocumented == []


def test_config_reference_in_docs_is_current():
    generated = config_reference_markdown()
    assert (ROOT / "docs" / "config.md").read_text() == generated, (
        "docs/config.md is stale: run `brats config-reference > docs/config.md`"
    )


def test_print_config_cli(capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "--config",
                str(ROOT / "configs" / "demo.yaml"),
                "--set",
                "train.lr=0.5",
                "--print-config",
            ]
        )
    assert exc.value.code == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["train"]["lr"] == 0.5


def test_cli_reports_config_error_on_one_line(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  rooot: /x\n")
    assert main(["extract", "--config", str(p)]) == 1
    err = capsys.readouterr().err
    assert "data.rooot" in err and str(p) in err and "Traceback" not in err
