"""Envelope encryption (runtime.sealing): values open only under their key and context,
key-encryption keys are read without ever being quoted, and a rotated KEK still unwraps."""
import pytest

from runtime.sealing import ConfiguredKeyProvider, SealingError, new_data_key, open_sealed, parse_keys, seal

KEK_A = "a-1:" + "11" * 32
KEK_B = "b-1:" + "22" * 32


def test_a_sealed_value_opens_only_under_its_key_and_context() -> None:
    key = new_data_key()
    sealed = seal(key, "Ana Exemplu, 6160514041231".encode(), b"case:c-1")
    assert b"Exemplu" not in sealed
    assert open_sealed(key, sealed, b"case:c-1") == "Ana Exemplu, 6160514041231".encode()
    with pytest.raises(SealingError):
        open_sealed(key, sealed, b"case:c-2")  # moved to another case
    with pytest.raises(SealingError):
        open_sealed(new_data_key(), sealed, b"case:c-1")
    with pytest.raises(SealingError):
        open_sealed(key, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"case:c-1")


def test_a_data_key_wrapped_for_one_scope_does_not_unwrap_for_another() -> None:
    provider = ConfiguredKeyProvider.from_setting(KEK_A)
    data_key = new_data_key()
    kek_id, wrapped = provider.wrap(data_key, "case:c-1")
    assert kek_id == "a-1" and data_key not in wrapped
    assert provider.unwrap(kek_id, wrapped, "case:c-1") == data_key
    with pytest.raises(SealingError):
        provider.unwrap(kek_id, wrapped, "case:c-2")


def test_a_new_kek_wraps_while_the_old_one_still_unwraps() -> None:
    old = ConfiguredKeyProvider.from_setting(KEK_A)
    kek_id, wrapped = old.wrap(b"k" * 32, "case:c-1")
    rotated = ConfiguredKeyProvider.from_setting(f"{KEK_B},{KEK_A}")
    assert rotated.wrap(b"k" * 32, "case:c-1")[0] == "b-1"
    assert rotated.unwrap(kek_id, wrapped, "case:c-1") == b"k" * 32
    with pytest.raises(SealingError, match="not configured"):
        ConfiguredKeyProvider.from_setting(KEK_B).unwrap(kek_id, wrapped, "case:c-1")


@pytest.mark.parametrize("setting, problem", [
    ("", "no key is set"),
    ("a-1", "key 1 is not written kid:hex"),
    ("a-1:" + "zz" * 32, "key 1 is not hexadecimal"),
    ("a-1:" + "11" * 32 + ",b-1:" + "11" * 16, "key 2 is 16 bytes"),
])
def test_keys_that_cannot_be_used_are_refused_without_being_quoted(setting: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        parse_keys(setting, "PUNTE_DATA_KEYS")
    assert "11" * 16 not in str(refused.value) and "zz" not in str(refused.value)
