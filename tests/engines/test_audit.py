"""The native engine against OpenRLHF 0.11.2's formulas where an audit found them apart: log-probabilities under the
sampling temperature, the value head a critic started from the policy gets, and the DPO NLL term."""

import pytest

torch = pytest.importorskip("torch")

from yulan.engines.native import dpo, ppo  # noqa: E402
from yulan.runtime import batches, models, tiny  # noqa: E402
from yulan.runtime.batches import Tokenized  # noqa: E402


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return tiny.resolve("tiny:policy", 4096, 1024)


def test_log_probabilities_are_those_of_the_policy_at_the_sampling_temperature(tiny_path):
    """OpenRLHF's actor and reference divide the logits by rollout.temperature before the log-softmax."""
    model = models.load_causal_lm(tiny_path, torch.float32).eval()
    ids = [5, 17, 230, 41, 9, 77, 300, 2]
    sample = Tokenized(ids, [batches.IGNORE] * 3 + ids[3:])
    flat = batches.layout([[sample]], model)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
        found = {t: batches.token_logprobs(model, flat, t)[0] for t in (1.0, 0.7)}
    targets = torch.tensor(ids[1:])
    for temperature, logps in found.items():  # position t scores token t + 1; tokens 3.. are labelled
        expected = torch.log_softmax(logits / temperature, -1).gather(-1, targets[:, None]).squeeze(-1)
        assert logps[2:7].tolist() == pytest.approx(expected[2:7].tolist(), abs=1e-5)
        assert logps[:2].abs().sum().item() == 0.0 and logps[7].item() == 0.0  # no label, no log-probability
    assert (found[0.7][2:7] - found[1.0][2:7]).abs().max().item() > 1e-3  # the temperature changes them

    actor, reference = model, models.load_causal_lm(tiny_path, torch.float32).eval()
    old, ref, _, mask = ppo.score_sequences([sample], actor, reference, None, 1, torch.no_grad, 0.7)
    assert old[0].tolist() == pytest.approx(found[0.7][2:7].tolist(), abs=1e-5) and mask.sum().item() == 5
    assert ref[0].tolist() == pytest.approx(old[0].tolist(), abs=1e-6)


def test_a_critic_started_from_the_policy_gets_openrlhfs_value_head(tiny_path):
    from yulan.compose import load

    experiment = load(["experiment=smoke", "ppo.critic.init_from=policy"])
    torch.manual_seed(0)
    loaded = ppo.load_critic(experiment, tiny_path, 0)
    assert loaded.score.weight.std().item() == pytest.approx(1 / 65, rel=0.15)  # hidden 64; transformers gives 0.02

    critic = models.load_scorer(tiny_path, torch.float32, 0)
    hidden = critic.config.hidden_size
    torch.manual_seed(0)
    ppo.init_value_head(critic)
    weight = critic.score.weight
    assert weight.shape == (1, hidden)
    torch.manual_seed(0)
    expected = torch.empty(1, hidden).normal_(
        mean=0.0, std=1 / (hidden + 1)
    )  # OpenRLHF's get_llm_for_sequence_regression
    assert torch.equal(weight.detach(), expected)
    assert weight.std().item() == pytest.approx(1 / (hidden + 1), rel=0.25)  # not transformers' 0.02


def test_the_dpo_nll_term_is_the_mean_of_per_response_means():
    """OpenRLHF: -mean over chosen responses of (summed log-probability / response tokens); a token mean would give
    -(-4 - 1) / 6 per response = 0.8333 each, 1.6667 for the two."""
    chosen = torch.tensor([-4.0, -1.0])
    lengths = torch.tensor([4, 2])
    assert dpo.nll_sum(chosen, lengths).item() == pytest.approx(1.5)  # (-4/4) + (-1/2), negated
    assert dpo.nll_sum(chosen, lengths).item() / 2 == pytest.approx(0.75)  # what a batch of these two adds, per pair


def test_a_conversation_ends_at_its_last_end_of_turn_not_the_newline_after_it(tiny_path):
    """OpenRLHF's SFT and reward datasets rstrip("\\n") the rendered text: no loss on the template's last newline."""
    tokenizer = models.load_tokenizer(tiny_path)
    chat = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "The answer is 5."}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    assert rendered.endswith("<|im_end|>\n")  # the template's last turn ends with a newline
    sample = batches.tokenize_chat(tokenizer, chat, 512)
    assert tokenizer.decode(sample.input_ids).endswith("The answer is 5.<|im_end|>")
    trained = [token for token in sample.labels if token != batches.IGNORE]
    assert tokenizer.decode(trained) == "The answer is 5.<|im_end|>"
