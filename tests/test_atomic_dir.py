import os

import pytest

from nerfconf import atomic_dir
from nerfconf.atomic_dir import replace_directory


def _tree(directory):
    return {p.relative_to(directory).as_posix(): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("exchange", ["renameat2", "two renames"])
def test_the_new_files_replace_the_old_and_the_rest_is_kept(tmp_path, monkeypatch, exchange):
    if exchange == "two renames":
        monkeypatch.setattr(atomic_dir, "_renameat2", None)  # as on a system without it
    target = tmp_path / "d"
    (target / "sub").mkdir(parents=True)
    for name, text in {"a": "old a", "b": "old b", "derived": "x", "sub/c": "c"}.items():
        (target / name).write_text(text)
    os.chmod(target, 0o750)
    with replace_directory(target, drop={"derived"}) as staging:
        (staging / "a").write_text("new a")
    assert _tree(target) == {"a": "new a", "b": "old b", "sub/c": "c"}
    assert os.stat(target).st_mode & 0o777 == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_failure_inside_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "a").write_text("old a")
    with pytest.raises(RuntimeError), replace_directory(target) as staging:
        (staging / "a").write_text("new a")
        raise RuntimeError("crash")
    assert _tree(target) == {"a": "old a"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_new_directory_appears_whole(tmp_path):
    with replace_directory(tmp_path / "x" / "d") as staging:
        (staging / "a").write_text("a")
    assert _tree(tmp_path / "x" / "d") == {"a": "a"}


def test_a_link_to_the_directory_is_kept_and_what_it_points_at_replaced(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    (real / "a").write_text("old a")
    link.symlink_to(real)
    with replace_directory(link) as staging:
        (staging / "a").write_text("new a")
    assert link.is_symlink() and _tree(link) == {"a": "new a"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
