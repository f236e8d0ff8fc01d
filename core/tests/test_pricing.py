import textwrap

import pytest

from lookout.core.pricing import PriceTable, PriceTableError

TABLE = """\
version: "2030-01-01"
models:
  - {provider: openai, model: gpt-4o, input_per_mtok: 2.5, output_per_mtok: 10}
  - {provider: openai, model: gpt-4o-mini, input_per_mtok: 0.15, output_per_mtok: 0.6}
  - {provider: anthropic, model: claude-3-5-sonnet, input_per_mtok: 3, output_per_mtok: 15}
  - {provider: openai, model: text-embedding-3-small, input_per_mtok: 0.02, output_per_mtok: 0}
  - {provider: groq, model: llama-3.3-70b, input_per_mtok: 0.59, output_per_mtok: 0.79}
  - {provider: together, model: llama-3.3-70b, input_per_mtok: 0.88, output_per_mtok: 0.88}
"""


@pytest.fixture
def table(tmp_path) -> PriceTable:
    path = tmp_path / "prices.yaml"
    path.write_text(TABLE)
    return PriceTable.load(str(path))


def write(tmp_path, body: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_the_packaged_table_loads_with_its_version_and_prices_the_common_models():
    packaged = PriceTable.load()
    assert packaged.version == "2026-12-01"
    for provider, model in [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-sonnet-20241022"),
        ("google", "gemini-2.5-pro"),
        ("mistral", "mistral-large-latest"),
        ("groq", "llama-3.3-70b-versatile"),
    ]:
        cost = packaged.cost(provider, model, 1000, 1000)
        assert cost is not None and cost > 0, model


def test_cost_is_tokens_times_the_price_per_million(table):
    assert table.version == "2030-01-01"
    assert table.cost("openai", "gpt-4o", 1_000_000, 0) == pytest.approx(2.5)
    assert table.cost("openai", "gpt-4o", 1200, 300) == pytest.approx((1200 * 2.5 + 300 * 10) / 1e6)


def test_a_dated_snapshot_is_priced_as_its_base_model(table):
    assert table.lookup("openai", "gpt-4o-2024-08-06").model == "gpt-4o"
    assert table.lookup("anthropic", "claude-3-5-sonnet@20241022").model == "claude-3-5-sonnet"
    assert table.lookup("anthropic", "claude-3-5-sonnet:beta").model == "claude-3-5-sonnet"


def test_mini_is_not_priced_as_its_base_model(table):
    assert table.lookup("openai", "gpt-4o-mini").model == "gpt-4o-mini"
    assert table.lookup("openai", "gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"
    assert table.cost("openai", "gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)


def test_a_name_that_only_shares_a_prefix_is_unknown(table):
    assert table.lookup("openai", "gpt-4oo") is None
    assert table.lookup("openai", "gpt-4") is None
    assert table.cost("openai", "gpt-5-turbo", 10, 10) is None
    assert table.cost("openai", "", 10, 10) is None


def test_model_names_match_case_insensitively(table):
    assert table.lookup("OpenAI", "GPT-4o-2024-08-06").model == "gpt-4o"


def test_an_unknown_provider_is_matched_by_model_alone(table):
    assert table.lookup("unknown", "gpt-4o").provider == "openai"
    assert table.lookup(None, "claude-3-5-sonnet-latest").provider == "anthropic"
    assert table.lookup("azure", "gpt-4o-mini").model == "gpt-4o-mini"
    # A known provider without the model: an OpenAI client pointed at another host.
    assert table.lookup("openai", "claude-3-5-sonnet").provider == "anthropic"


def test_the_provider_picks_between_models_with_one_name(table):
    assert table.cost("groq", "llama-3.3-70b", 1_000_000, 0) == pytest.approx(0.59)
    assert table.cost("together", "llama-3.3-70b", 1_000_000, 0) == pytest.approx(0.88)
    # Without a provider there is no telling which price applies, so there is no cost.
    assert table.cost("unknown", "llama-3.3-70b", 1_000_000, 0) is None


def test_missing_token_counts_give_no_cost_unless_that_side_is_free(table):
    assert table.cost("openai", "gpt-4o", None, None) is None
    assert table.cost("openai", "gpt-4o", 100, None) is None
    assert table.cost("openai", "gpt-4o", None, 100) is None
    assert table.cost("openai", "text-embedding-3-small", 1_000_000, None) == pytest.approx(0.02)


@pytest.mark.parametrize(
    "body, message",
    [
        (
            """\
            version: "1"
            models:
              - {provider: openai, model: a, input_per_mtok: 1, output_per_mtok: 1}
              - {provider: openai, model: b, input_per_mtok: "cheap", output_per_mtok: 1}
            """,
            r"models\[1\]\.input_per_mtok: must be a number",
        ),
        (
            """\
            version: "1"
            models:
              - {provider: openai, model: a, input_per_mtok: 1, output_per_mtok: -2}
            """,
            r"models\[0\]\.output_per_mtok",
        ),
        (
            """\
            version: "1"
            models:
              - {provider: openai, input_per_mtok: 1, output_per_mtok: 1}
            """,
            r"models\[0\]\.model: must be a non-empty string",
        ),
        (
            """\
            version: "1"
            models:
              - {provider: openai, model: a, input_per_mtok: 1, output_per_mtok: 1, input_per_mtoks: 2}
            """,
            r"models\[0\]: unknown field 'input_per_mtoks'",
        ),
        (
            """\
            version: "1"
            models:
              - {provider: openai, model: a, input_per_mtok: 1, output_per_mtok: 1}
              - {provider: OpenAI, model: A, input_per_mtok: 2, output_per_mtok: 2}
            """,
            r"models\[1\]\.model: OpenAI/A is already in models\[0\]",
        ),
        ("models: []\n", r"version: must be a non-empty string"),
        ('version: "1"\nmodels: []\n', r"models: must be a non-empty list"),
        ("version: [unclosed\n", r"not valid YAML"),
    ],
)
def test_a_malformed_table_is_rejected_naming_the_file_entry_and_field(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(PriceTableError, match=message) as error:
        PriceTable.load(path)
    assert str(error.value).startswith(path)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PriceTableError, match="cannot read price table"):
        PriceTable.load(str(tmp_path / "nope.yaml"))


def test_an_unquoted_date_version_is_read_as_that_date(tmp_path):
    entry = "{provider: p, model: m, input_per_mtok: 1, output_per_mtok: 1}"
    path = write(tmp_path, f"version: 2030-01-01\nmodels:\n  - {entry}\n")
    assert PriceTable.load(path).version == "2030-01-01"


def test_cached_prompt_tokens_are_priced_at_the_cached_input_price_and_the_rest_at_the_input_price():
    table = PriceTable.from_data({"version": "t", "models": [
        {"provider": "openai", "model": "m", "input_per_mtok": 2.0, "output_per_mtok": 8.0,
         "cached_input_per_mtok": 0.5},
    ]})
    # 1000 prompt tokens of which 400 came from the cache, 100 answer tokens.
    expected = (600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6
    assert table.cost("openai", "m", 1000, 100, cache_read=400) == pytest.approx(expected)
    assert table.cost("openai", "m", 1000, 100) == pytest.approx((1000 * 2.0 + 100 * 8.0) / 1e6)


def test_cache_writes_have_their_own_price_and_an_entry_without_cache_prices_charges_cached_tokens_as_input():
    table = PriceTable.from_data({"version": "t", "models": [
        {"provider": "anthropic", "model": "c", "input_per_mtok": 3.0, "output_per_mtok": 15.0,
         "cached_input_per_mtok": 0.3, "cache_write_per_mtok": 3.75},
        {"provider": "mistral", "model": "plain", "input_per_mtok": 1.0, "output_per_mtok": 1.0},
    ]})
    expected = (500 * 3.0 + 300 * 0.3 + 200 * 3.75 + 10 * 15.0) / 1e6
    assert table.cost("anthropic", "c", 1000, 10, cache_read=300, cache_write=200) == pytest.approx(expected)
    assert table.cost("mistral", "plain", 1000, 10, cache_read=900) == pytest.approx(1010 / 1e6)


def test_cache_tokens_reported_beside_the_prompt_rather_than_inside_it_are_not_subtracted_below_zero():
    table = PriceTable.from_data({"version": "t", "models": [
        {"provider": "anthropic", "model": "c", "input_per_mtok": 3.0, "output_per_mtok": 15.0,
         "cached_input_per_mtok": 0.3},
    ]})
    # Anthropic's own API: input_tokens excludes the 5000 cache-read tokens.
    assert table.cost("anthropic", "c", 20, 0, cache_read=5000) == pytest.approx((20 * 3.0 + 5000 * 0.3) / 1e6)


def test_a_negative_or_non_numeric_cache_price_is_refused_naming_the_field():
    with pytest.raises(PriceTableError, match=r"models\[0\]\.cached_input_per_mtok"):
        PriceTable.from_data({"version": "t", "models": [
            {"provider": "p", "model": "m", "input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtok": -1},
        ]})


def test_the_packaged_table_prices_cached_tokens_below_plain_input_for_openai_and_anthropic():
    packaged = PriceTable.load()
    for provider, model in [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")]:
        price = packaged.lookup(provider, model)
        assert price is not None and price.cached_input_per_mtok is not None
        assert price.cached_input_per_mtok < price.input_per_mtok
