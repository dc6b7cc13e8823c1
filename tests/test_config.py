import pytest

from napari_spatimeinr.core.config import RenderConfig, StackOptions, TrainConfig, build, load_yaml
from napari_spatimeinr.core.errors import SpatimeINRError


def test_every_field_is_documented():
    for model in (StackOptions, TrainConfig, RenderConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_clear_messages():
    with pytest.raises(SpatimeINRError, match="time_limit"):
        build(TrainConfig, {"time_limit": -1})
    with pytest.raises(SpatimeINRError, match="method"):
        build(TrainConfig, {"method": "bicubic"})
    with pytest.raises(SpatimeINRError, match="steps_typo"):
        build(TrainConfig, {"steps_typo": 3})
    with pytest.raises(SpatimeINRError, match="axes"):
        build(StackOptions, {"axes": "TTYX"})
    with pytest.raises(SpatimeINRError, match="no hyperparameters"):
        build(TrainConfig, {"method": "cubic", "params": {}})


def test_yaml_files(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: linear\nseed: 3\n")
    assert build(TrainConfig, load_yaml(p)).seed == 3
    p.write_text("- a\n- b\n")
    with pytest.raises(SpatimeINRError, match="mapping"):
        load_yaml(p)
    with pytest.raises(SpatimeINRError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
