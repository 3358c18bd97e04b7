"""Answer verdicts on the forms models write and the formats GSM8K and MATH store references in."""

import pytest

from yulan.rewards.answers import equivalent, extract, is_correct, plain_number, reference_of

pytest.importorskip("math_verify")


@pytest.mark.parametrize(
    "completion,reference",
    [
        ("The answer is **18**.", "18"),
        ("So she pays **$18**", "18"),
        ("The answer is __18__", "18"),
        ("18!", "18"),
        ("The answer is 18!", "18"),
        ("The answer is 18 (dollars).", "18"),
        ("The answer is 18 (in dollars)", "18"),
        ("答案是：5", "5"),
        ("答案：5。", "5"),
        ("答案是５。", "5"),
        ("答案为 ３万", "30000"),
        ("The answer is 5 thousand.", "5000"),
        ("It costs 2.5 million dollars, so the answer is 2.5 million", "2500000"),
        ("He walked 5 thousand steps", "5000"),
        ("The answer is −3.", "-3"),
        ("The answer is: 1,250 apples.", "1250"),
        ("The total is $1,250.00", "1250"),
        ("The answer is 40%.", "40"),
        ("The answer is 40 \\%", "40"),
        ("#### 72", "72"),
        ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "0.75"),
        ("So the answer is $\\boxed{\\dfrac{1}{2}}$.", "\\frac12"),
        ("The answer is（18元）", "18"),
    ],
)
def test_common_forms_of_a_right_answer_are_right(completion, reference):
    assert is_correct(completion, reference)


@pytest.mark.parametrize(
    "completion,reference",
    [
        ("The answer is 5 thousand.", "5"),
        ("5 thousand", "5"),
        ("The answer is 9 minus two.", "9"),
        ("9 minus two", "9"),
        ("The answer is 3 plus 4", "3"),
        ("答案是 3 加 4", "3"),
        ("The answer is 18 (dollars) and 5 cents", "18"),
        ("The answer is 1e99999999999999999999", "1"),
        ("The answer is 17.", "18"),
        ("The answer is **17**.", "18"),
    ],
)
def test_wrong_or_undone_answers_are_wrong(completion, reference):
    assert not is_correct(completion, reference)


def test_numbers_are_parsed_with_bounds():
    assert plain_number("1e400") == 10**400
    assert plain_number("1e401") is None  # a bigger exponent would build a huge integer
    assert plain_number("1e99999999999999999999") is None
    assert plain_number("9" * 300) is None
    assert plain_number("**$1,234.50** (USD).") == plain_number("1234.5")
    assert plain_number("3万") == 30000 and plain_number("2 hundred") == 200


# GSM8K's answer field and MATH's solution field, as the datasets store them
GSM8K = [
    (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72",
        "72",
    ),
    (
        "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
        "10",
    ),
    ("The total is 1,000 + 250 = <<1000+250=1250>>1,250\n#### 1,250", "1250"),
    ("She lost 4 - 7 = <<4-7=-3>>-3 points.\n#### -3", "-3"),
]
MATH = [
    ("Adding, we get $\\frac{1}{4}+\\frac{1}{2}=\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}", "0.75"),
    ("The roots are $x=2$ and $x=3$, so the set is $\\boxed{\\{2,3\\}}$.", "\\{2,3\\}", "3, 2"),
    ("Hence the interval is $\\boxed{[0,1)}$.", "[0,1)", "[0, 1)"),
    ("So $\\sqrt{27}=\\boxed{3\\sqrt{3}}$.", "3\\sqrt{3}", "3\\sqrt3"),
    ("The answer is $\\boxed{10\\%}$.", "10\\%", "10"),
    ("Thus $\\boxed{\\text{(C)}}$.", "\\text{(C)}", "\\text{(C)}"),
]


@pytest.mark.parametrize("field,answer", GSM8K)
def test_gsm8k_references(field, answer):
    reference = reference_of(field)
    assert equivalent(answer, reference)
    assert is_correct(f"Step by step... The answer is {answer}.", reference)
    assert not is_correct("The answer is 7777.", reference)


@pytest.mark.parametrize("solution,boxed,answer", MATH)
def test_math_references(solution, boxed, answer):
    assert reference_of(solution) == boxed
    assert equivalent(answer, reference_of(solution))
    assert extract(solution) == boxed
