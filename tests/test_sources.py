"""Source adapters on real rows and on the column layouts of later dataset versions."""

from __future__ import annotations

import pytest

from conftest import article_sources, curation_rules
from cxr.errors import ConfigError, DataError
from cxr.sources import RECORD_COLUMNS, load_source, rule_reasons
from cxr.sources.ieee8023 import finding_terms, normalise_column

MARCH_2020_HEADER = (
    "Patientid,offset,sex,age,finding,survival,view,modality,date,location,filename,doi, url,"
    "license,clinical notes,other notes,\n"
)
# The column names of the dataset's later releases (2020-06 onwards).
LATER_HEADER = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,view,modality,date,"
    "location,folder,filename,doi,url,license,clinical_notes,other_notes\n"
)


def test_column_names_of_all_versions_normalise():
    assert normalise_column(" url") == "url"
    assert normalise_column("clinical notes") == "clinical_notes"
    assert normalise_column("Patientid") == "patientid"


def test_flat_and_hierarchical_findings():
    assert finding_terms("COVID-19") == ["COVID-19"]
    assert finding_terms("Pneumonia/Viral/COVID-19") == ["Pneumonia", "Viral", "COVID-19"]


def test_march_2020_layout(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "metadata.csv").write_text(
        MARCH_2020_HEADER
        + '2,0,M,65,COVID-19,Y,PA,X-ray,2020,,a.jpeg,10.1/x,https://x,,"notes, with\nnewline",,\n'
        + "3,0,F,40,SARS,,Axial,CT,2003,,b.png,,,,,,\n"
    )
    (tmp_path / "images" / "orphan.png").write_bytes(b"x")
    records = load_source("covid", {"kind": "ieee8023", "root": str(tmp_path), "label": "covid"})
    assert list(records.columns) == RECORD_COLUMNS
    assert records["record"].tolist() == [
        "metadata.csv:line 2",
        "metadata.csv:line 4",
        "images/orphan.png",
    ]
    first = records.iloc[0]
    assert (first["patient"], first["file"], first["url"]) == (
        "covid:2",
        "images/a.jpeg",
        "https://x",
    )
    assert first["notes"] == "notes, with\nnewline"
    assert records.iloc[1]["modality"] == "CT"
    assert records.iloc[2]["pre_exclusion"] == "no metadata row"


def test_later_layout_with_folder_and_hierarchical_finding(tmp_path):
    (tmp_path / "metadata.csv").write_text(
        LATER_HEADER
        + "7,0,M,50,Pneumonia/Viral/COVID-19,Y,,,PA,X-ray,2020,,images,c.jpg,,,,n,o\n"
        + "8,0,M,50,Pneumonia/Viral/COVID-19,Y,,,Axial,CT,2020,,volumes,d.nii.gz,,,,,\n"
    )
    records = load_source("covid", {"kind": "ieee8023", "root": str(tmp_path), "label": "covid"})
    assert records["file"].tolist() == ["images/c.jpg", "volumes/d.nii.gz"]
    assert records["finding"].iloc[0] == "Pneumonia/Viral/COVID-19"
    assert records["notes"].iloc[0] == "n"


def test_early_version_without_modality_infers_ct_from_view(tmp_path):
    (tmp_path / "metadata.csv").write_text(
        "patientid,finding,view,filename\n1,COVID-19,Axial,a.png\n2,COVID-19,PA,b.png\n"
    )
    records = load_source("c", {"kind": "ieee8023", "root": str(tmp_path), "label": "covid"})
    assert records["modality"].tolist() == ["CT", "X-ray"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("patientid,view,filename\n1,PA,a.png\n", "finding"),
    ],
)
def test_unusable_metadata_raises_naming_the_problem(tmp_path, content, message):
    (tmp_path / "metadata.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        load_source("c", {"kind": "ieee8023", "root": str(tmp_path), "label": "covid"})


def test_header_only_metadata_gives_no_records(tmp_path):
    (tmp_path / "metadata.csv").write_text(MARCH_2020_HEADER)
    assert load_source("c", {"kind": "ieee8023", "root": str(tmp_path), "label": "covid"}).empty


def test_non_utf8_bytes_are_replaced_not_fatal(tmp_path):
    (tmp_path / "metadata.csv").write_bytes(
        b"patientid,finding,view,filename,clinical notes\n1,COVID-19,PA,a.png,caf\xe9\n"
    )
    records = load_source("c", {"kind": "ieee8023", "root": str(tmp_path), "label": "covid"})
    assert records["notes"].iloc[0] == "caf\ufffd"


def test_folder_adapter_patient_keys_and_odd_names(tmp_path):
    for name in ["IM-0001-0001.jpeg", "NORMAL2-IM-0001-0002.jpeg", "IM-0019-0001 (1).jpeg",
                 "notes.txt", "unnamed.jpeg", ".DS_Store"]:  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    spec = {"kind": "folder", "root": str(tmp_path), "label": "normal",
            "patient_pattern": r"(?:NORMAL2-)?(IM-\d{4})"}  # fmt: skip
    records = load_source("kermany", spec).set_index("file")
    assert len(records) == 6  # a hidden file is an input too, logged with its reason
    assert records.loc[".DS_Store", "pre_exclusion"] == "hidden file"
    assert records.loc["NORMAL2-IM-0001-0002.jpeg", "patient"] == "kermany:IM-0001"
    assert records.loc["IM-0019-0001 (1).jpeg", "patient"] == "kermany:IM-0019"
    assert records.loc["notes.txt", "pre_exclusion"].startswith("not an image file name")
    assert records.loc["unnamed.jpeg", "pre_exclusion"].startswith("no patient key")


def test_folder_pattern_without_group_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="group"):
        load_source("k", {"kind": "folder", "root": str(tmp_path), "label": "n",
                          "patient_pattern": "IM-"})  # fmt: skip


def test_ieee8023_rules_read_flat_and_hierarchical_findings(tmp_path):
    def row(pid, finding, view, modality):
        return f"{pid},0,M,50,{finding},Y,,,{view},{modality},2020,,images,{pid}.jpg,,,,,\n"

    (tmp_path / "metadata.csv").write_text(
        LATER_HEADER
        + row(1, "Pneumonia/Viral/COVID-19", "PA", "X-ray")
        + row(2, "covid19", "pa", "X-ray")
        + row(3, "Pneumonia/Viral/SARS", "PA", "X-ray")
        + row(4, "COVID-19", "AP", "X-ray")
        + row(5, "COVID-19", "Axial", "CT")
    )
    spec = {"kind": "ieee8023", "root": str(tmp_path), "label": "covid"}
    records = load_source("covid", spec)
    assert rule_reasons("covid", spec, records, curation_rules()).tolist() == [
        "",
        "",
        "finding 'Pneumonia/Viral/SARS', not COVID-19",
        "view 'AP', not PA",
        "modality CT, not X-ray",
    ]
    views = rule_reasons("covid", spec, records, curation_rules(views=("PA", "AP")))
    assert views.tolist()[3] == ""


def test_folder_rules_pass_every_record(tmp_path):
    (tmp_path / "IM-0001-0001.jpeg").write_bytes(b"x")
    spec = {"kind": "folder", "root": str(tmp_path), "label": "normal",
            "patient_pattern": r"(IM-\d{4})"}  # fmt: skip
    records = load_source("kermany", spec)
    assert rule_reasons("kermany", spec, records, curation_rules(views=("XYZ",))).tolist() == [""]


@pytest.mark.realdata
def test_real_march_2020_metadata(shared_data):
    sources = article_sources(shared_data)
    records = load_source("covid", sources["covid"])
    # 146 metadata rows + 4 image files that no row names + UPSTREAM_README.md.
    assert len(records) == 151
    assert (records["pre_exclusion"] == "no metadata row").sum() == 4
    assert records.set_index("file").loc["UPSTREAM_README.md", "pre_exclusion"] == (
        "not an image file name (.md)"
    )
    assert records["patient"].iloc[0] == "covid:2"
    assert set(records["modality"]) >= {"X-ray", "CT"}
    reasons = rule_reasons("covid", sources["covid"], records, curation_rules())
    assert (reasons == "").sum() == 69  # PA X-rays of COVID-19, as curation keeps them


@pytest.mark.realdata
def test_real_kermany_and_nih_names(shared_data):
    sources = article_sources(shared_data)
    kermany = load_source("kermany", sources["kermany"])
    assert len(kermany) == 118 and (kermany["pre_exclusion"] == "").all()
    assert "kermany:IM-0019" in set(kermany["patient"])
    nih = load_source("nih", sources["nih"])
    assert len(nih) == 121 and nih["patient"].nunique() == 92
