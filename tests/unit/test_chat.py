"""Chat templates: the catalog's Gemma template (Google's rule: optional system message,
then alternating turns), template refusals as request errors, and exactly one BOS."""

import pytest

from orchestrator.engines import chat
from orchestrator.engines.base import RequestError, template_error
from orchestrator.models.catalog import get_model

GEMMA = get_model("gemma-3-270m").chat_template


class WordTokenizer:
    """The two things engines ask of a Hugging Face tokenizer here."""

    bos_token = "<bos>"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[str]:
        words = text.replace("<bos>", " <bos> ").split()
        return (["<bos>"] if add_special_tokens else []) + words


def test_gemma_turns_with_a_system_message():
    out = chat.render(GEMMA, [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Yo"},
                              {"role": "user", "content": "Q"}], bos="<bos>")
    assert out == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>"
                   "model\nYo<end_of_turn>\n<start_of_turn>user\nQ<end_of_turn>\n"
                   "<start_of_turn>model\n")


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    [{"role": "assistant", "content": "a"}],
    [{"role": "system", "content": "only a system message"}],
])
def test_gemma_refuses_what_its_template_refuses(messages):
    with pytest.raises(ValueError) as e:
        chat.render(GEMMA, messages)
    err = template_error(e.value)
    assert isinstance(err, RequestError) and err.param == "messages"


def test_a_template_bug_is_named_by_type_only():
    err = template_error(KeyError("/secret/path"))
    assert "secret" not in err.message and "KeyError" in err.message


@pytest.mark.parametrize("text, chat_, ids", [
    ("<bos>hi there", True, ["<bos>", "hi", "there"]),  # the template wrote the BOS
    ("hi there", True, ["<bos>", "hi", "there"]),  # it did not: the tokenizer's
    ("hi there", False, ["<bos>", "hi", "there"]),  # a plain prompt
])
def test_exactly_one_bos(text, chat_, ids):
    assert chat.encode_once(WordTokenizer(), text, chat_) == ids


def test_tools_reach_a_template_that_reads_them_and_are_refused_by_one_that_does_not():
    import pytest

    from orchestrator.engines import chat
    from orchestrator.engines.base import RequestError

    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    msgs = [{"role": "user", "content": "hi"}]
    takes = "{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.content }}" \
            "{% endfor %}"
    out = chat.render_or_refuse(takes, msgs, tools=[tool])
    assert '"name": "get_weather"' in out and out.endswith("hi")  # no HTML escaping
    assert chat.render_or_refuse(takes, msgs) == "hi"
    with pytest.raises(RequestError) as e:
        chat.render_or_refuse("{% for m in messages %}{{ m.content }}{% endfor %}", msgs,
                              tools=[tool])
    assert (e.value.param, e.value.code) == ("tools", "tools_unsupported")
