"""The already-stored check writes plain keys into its query and binds anything else."""

from lookout.sink.store import _literal


def test_plain_app_ids_and_uuids_are_written_as_a_list_of_tuples():
    keys = [("shop", "0190c0de-0000-7000-8000-000000000001"), ("a.b:c-d_e", "0190c0de-0000-7000-8000-000000000002")]
    assert _literal(keys) == (
        "(('shop','0190c0de-0000-7000-8000-000000000001'),('a.b:c-d_e','0190c0de-0000-7000-8000-000000000002'))"
    )
    assert _literal([("0190c0de-0000-7000-8000-000000000001",)]) == "('0190c0de-0000-7000-8000-000000000001')"


def test_a_key_with_any_other_character_or_no_keys_is_left_to_binding():
    for odd in ("it's", "a\\b", "x y", "é", "", "a" * 129):
        assert _literal([("shop", "0190c0de-0000-7000-8000-000000000001"), (odd, "0190")]) is None
    assert _literal([("shop", 7)]) is None
    assert _literal([]) is None
