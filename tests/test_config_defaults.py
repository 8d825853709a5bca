"""One source per default: every option of every conf group with dataclasses (problem, init, solver, run) composes to exactly its
dataclass's defaults (the yaml holds none of its own), checked field by field from the dataclass."""
import dataclasses
import shutil
import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import MISSING, OmegaConf

from lorasim import config
from lorasim.config import ConfigError, InitConfig, build, options, register_configs

CONF = Path(__file__).resolve().parent.parent / "conf"
GROUPS = tuple(config._MODULES)  # every group with option dataclasses


def drift(conf: Path, group: str, option: str) -> list[str]:
    """Where conf/<group>/<option>.yaml, composed alone, differs from its dataclass's defaults."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            node = compose(config_name=None, overrides=[f"+{group}={option}"])[group]
    finally:
        GlobalHydra.instance().clear()
    cls = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(cls):
        return [f"{group}/{option}.yaml does not extend a schema (/schema/{group}/<name>@_here_)"]
    found = []
    for f in dataclasses.fields(cls):
        value = MISSING if OmegaConf.is_missing(node, f.name) else OmegaConf.to_container(node)[f.name]
        if value != f.default:
            found.append(f"{group}/{option}.yaml: {f.name}={value!r}, {cls.__name__}.{f.name}={f.default!r}")
    return found


def _yaml_options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in _yaml_options(g)])
def test_yaml_composes_to_the_dataclass_defaults(group, option):
    assert drift(CONF, group, option) == []


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_has_its_yaml_and_every_yaml_its_option(group):
    assert _yaml_options(group) == sorted(options(group))


def test_a_yaml_that_copies_a_default_with_another_value_is_caught(tmp_path):
    """Mutation: sensing.yaml with the Python default of before (κ = 1, while SensingConfig says 10)."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    with open(conf / "problem" / "sensing.yaml", "a") as fh:
        fh.write("kappa: 1.0\n")
    assert drift(conf, "problem", "sensing") == ["problem/sensing.yaml: kappa=1.0, SensingConfig.kappa=10.0"]
    (conf / "init" / "plain.yaml").write_text("name: spectral\nzeta: 1.0\n")  # no schema: not checkable
    assert "does not extend a schema" in drift(conf, "init", "plain")[0]


def test_the_cli_and_the_python_api_build_the_same_sensing_problem():
    from lorasim.problems import MatrixSensing, SensingConfig

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        values = OmegaConf.to_container(compose(config_name=None, overrides=["+problem=sensing"]).problem)
    GlobalHydra.instance().clear()
    assert build(SensingConfig, values) == SensingConfig()
    assert MatrixSensing(n1=8, n2=6, r_star=2).config == build(SensingConfig, dict(values, n1=8, n2=6, r_star=2))


@pytest.mark.parametrize("override, message", [
    ("problem.kappa=abc", "problem.kappa=abc: allowed a number"),
    ("problem.d=2.5", "problem.d=2.5: allowed an integer"),
    ("run.quiet=maybe", "run.quiet=maybe: allowed true or false"),
    ("problem.cov_spectrum=x", "problem.cov_spectrum=x: allowed a list or null"),
])
def test_wrong_types_are_refused_while_composing_in_the_one_line_form(override, message):
    from lorasim.config import type_error

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(Exception) as err:
            compose(config_name=None, overrides=["+problem=linear", "+run=default", override])
    GlobalHydra.instance().clear()
    assert str(type_error(err.value)).startswith(message)


def test_unknown_keys_are_refused_while_composing():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(Exception, match="Could not override 'init.alpha'"):
            compose(config_name=None, overrides=["+init=spectral", "init.alpha=0.1"])
    GlobalHydra.instance().clear()


def test_offset_lora_one_is_lora_ga_top_r_under_its_own_name():
    import torch

    import lorasim

    prob = lorasim.LinearTeacher(d=12, k=10, r_star=2, n=80, noise=0.1, seed=1)
    with pytest.warns(FutureWarning, match="offset_lora_one"):
        old = lorasim.make_init(prob, 3, InitConfig(name="lora_ga", direction="top_r", gamma=4.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = lorasim.make_init(prob, 3, InitConfig(name="offset_lora_one", gamma=4.0))
    assert torch.equal(old.A, new.A) and torch.equal(old.B, new.B) and torch.equal(old.offset[0], new.offset[0])
    with pytest.raises(ConfigError, match=r"^init\.direction='top_r': allowed only with name in lora_ga"):
        build(InitConfig, {"name": "offset_lora_one", "direction": "top_r"})
