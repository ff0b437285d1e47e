"""gaze.data.layouts on tiny trees in Stanford Cars', FGVC-Aircraft's and NYCU HW1's layouts; answer.txt."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from gaze.data.images import TableFormatError
from gaze.data.layouts import read_layout, write_answer
from gaze.safe_paths import UnsafeNameError


def picture(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 32, 3), value, np.uint8)).save(path)


def make_cars(root, entries) -> None:
    records = np.zeros(len(entries), dtype=[("relative_im_path", "O"), ("class", "O"), ("test", "O")])
    for k, (path, label, test) in enumerate(entries):
        records[k] = (path, label, test)
        picture(root / path, 40 * label)
    savemat(root / "cars_annos.mat", {"annotations": records, "class_names": np.array(["AM General Hummer", "Audi TT"],
                                                                                       dtype=object)})


def test_stanford_cars_reads_train_test_and_the_1_based_classes(tmp_path):
    make_cars(tmp_path, [("car_ims/000001.jpg", 1, 0), ("car_ims/000002.jpg", 2, 1), ("car_ims/000003.jpg", 2, 0)])
    layout = read_layout("cars", tmp_path)
    assert layout.class_names == ["AM General Hummer", "Audi TT"]
    assert layout.samples["train"] == [(str(tmp_path / "car_ims/000001.jpg"), 0), (str(tmp_path / "car_ims/000003.jpg"), 1)]
    assert layout.samples["test"] == [(str(tmp_path / "car_ims/000002.jpg"), 1)]
    make_cars(tmp_path, [("car_ims/000001.jpg", 3, 0)])
    with pytest.raises(TableFormatError, match=r"cars_annos\.mat: annotations\[0\]: class 3"):
        read_layout("cars", tmp_path)
    make_cars(tmp_path, [("../outside.jpg", 1, 0)])
    with pytest.raises(UnsafeNameError, match="annotations"):
        read_layout("cars", tmp_path)


def test_fgvc_aircraft_reads_variants_by_line_and_names_a_bad_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "variants.txt").write_text("707-320\nA300B4\n")
    (data / "images_variant_trainval.txt").write_text("1025794 707-320\n1340192 A300B4\n")
    (data / "images_variant_test.txt").write_text("0056978 A300B4\n")
    layout = read_layout("aircraft", tmp_path)
    assert layout.class_names == ["707-320", "A300B4"]
    assert layout.samples["train"] == [(str(data / "images/1025794.jpg"), 0), (str(data / "images/1340192.jpg"), 1)]
    assert layout.samples["test"] == [(str(data / "images/0056978.jpg"), 1)]
    (data / "images_variant_test.txt").write_text("0056978 A300B4\n12345 A300B4\n")
    with pytest.raises(TableFormatError, match=r"images_variant_test\.txt:2: expected '<7-character id> <variant>'"):
        read_layout("aircraft", tmp_path)
    (data / "images_variant_test.txt").write_text("0056978 Concorde\n")
    with pytest.raises(TableFormatError, match=r"images_variant_test\.txt:1: variant 'Concorde'"):
        read_layout("aircraft", tmp_path)


def make_hw1(root, per_class: int = 4, tests: int = 3) -> None:
    names = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    lines = []
    for label, name in enumerate(names):
        for k in range(per_class):
            file = f"{label}{k:03d}.jpg"
            picture(root / "training_images" / file, 60 + 120 * label)
            lines.append(f"{file} {name}")
    (root / "training_labels.txt").write_text("\n".join(lines) + "\n")
    order = [f"{k:04d}.jpg" for k in reversed(range(tests))]
    for k, file in enumerate(order):
        picture(root / "testing_images" / file, 60 + 120 * (k % 2))
    (root / "testing_img_order.txt").write_text("\n".join(order) + "\n")


def test_nycu_hw1_reads_its_files_and_keeps_the_test_order(tmp_path):
    make_hw1(tmp_path)
    layout = read_layout("nycu_hw1", tmp_path)
    assert layout.class_names == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    assert len(layout.samples["train"]) == 8 and "test" not in layout.samples
    assert [p.rsplit("/", 1)[1] for p in layout.unlabelled] == ["0002.jpg", "0001.jpg", "0000.jpg"]
    (tmp_path / "training_labels.txt").write_text("0000.jpg 003.Sooty_Albatross\n")
    with pytest.raises(TableFormatError, match=r"training_labels\.txt:1: class '003\.Sooty_Albatross'"):
        read_layout("nycu_hw1", tmp_path)
    (tmp_path / "training_labels.txt").write_text("../0000.jpg 001.Black_footed_Albatross\n")
    with pytest.raises(UnsafeNameError, match=r"training_labels\.txt:1"):
        read_layout("nycu_hw1", tmp_path)


def test_answer_txt_is_file_and_class_name_per_line_without_a_trailing_newline(tmp_path):
    path = write_answer(tmp_path / "out" / "answer.txt", ["/x/testing_images/0002.jpg", "/x/testing_images/0001.jpg"],
                        [1, 0], ["001.A", "002.B"])
    assert path.read_bytes() == b"0002.jpg 002.B\n0001.jpg 001.A"
