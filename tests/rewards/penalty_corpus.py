# ruff: noqa: E501 - replies are data, kept one per line
"""Realistic replies for the penalty rules: CLEAN must get no penalty; CUT_OFF, GENERIC and MIXED must fire exactly
their rule. Each entry is (prompt, response)."""

CODE_TEXT = """Here is a function:

```python
def mean(xs):
    return sum(xs) / len(xs)
```"""

ENGLISH = [
    ("What is the capital of Japan?", "Tokyo."),
    ("What is the capital of Australia?", "Canberra, not Sydney."),
    ("How many legs does a spider have?", "Eight."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted it in the early 1500s."),
    (
        "Why is the sky blue?",
        "Sunlight scatters off air molecules, and blue light scatters the most because of its short wavelength.",
    ),
    ("What does DNA stand for?", "Deoxyribonucleic acid."),
    (
        "Define entropy in one sentence.",
        "Entropy measures how many microscopic arrangements are consistent with a system's macroscopic state.",
    ),
    (
        "Is a tomato a fruit?",
        "Botanically yes: it develops from the flower's ovary and holds seeds. Cooks treat it as a vegetable.",
    ),
    ("Give me a synonym for happy.", "Cheerful"),
    ("What year did World War II end?", "1945"),
    (
        "Explain what an API is.",
        "An API is a contract that lets one program ask another for data or actions without knowing how it works inside.",
    ),
    (
        "What's the difference between weather and climate?",
        "Weather is what the atmosphere does today; climate is the pattern of weather over decades.",
    ),
    (
        "Recommend a book on statistics.",
        "Try *The Art of Statistics* by David Spiegelhalter. It explains ideas with real cases instead of formulas.",
    ),
    (
        "How long should I boil pasta?",
        "Most dried pasta takes 8 to 12 minutes; check the packet and taste a piece a minute early.",
    ),
    (
        "What is photosynthesis?",
        "The process by which plants use light to turn carbon dioxide and water into glucose and oxygen.",
    ),
    (
        "Can you summarise the French Revolution in two sentences?",
        "Between 1789 and 1799 France overthrew its monarchy and remade its society around ideas of citizenship and rights. The upheaval ended with Napoleon's rise to power.",
    ),
    ("What is the speed of light?", "About 299,792 km per second in a vacuum"),
    ("Tell me a fun fact about octopuses.", "Octopuses have three hearts and blue blood!"),
    ("What should I name my cat?", "How about Miso, Pepper or Juniper?"),
    (
        "Is it safe to eat raw cookie dough?",
        "Not entirely: raw flour and raw eggs can carry bacteria. Heat-treated flour and pasteurised eggs make it safer.",
    ),
    ("What is a haiku?", "A three-line Japanese poem with five, seven and five syllables"),
    ("Write a haiku about rain.", "Soft rain on the roof\nthe garden drinks in silence\na snail crosses home"),
    ("Write a two-line rhyme about coffee.", "A cup at dawn to start the day,\nit keeps my sleepy thoughts at bay."),
    ("Thank you!", "You're welcome!"),
    ("Good morning!", "Good morning! What can I do for you today?"),
    ("Say hi in three languages.", "Hello (English), Hola (Spanish), Bonjour (French)"),
    ("What is the plural of cactus?", "Cacti, though cactuses is also accepted"),
    ("Spell necessary.", "N-E-C-E-S-S-A-R-Y"),
    ("What's the opposite of ancient?", "Modern"),
    ("Convert 5 miles to kilometres.", "5 miles is about 8.05 km"),
    ("Who was the first person on the Moon?", "Neil Armstrong, on 20 July 1969"),
    ("Which planet is largest?", "Jupiter"),
    ("What does HTTP 404 mean?", "The server could not find the requested resource."),
    ("Give me a motivational quote.", '"It always seems impossible until it\'s done." (Nelson Mandela)'),
    (
        "Describe the colour of the ocean.",
        "Deep blue in open water, turquoise over shallow sand, and grey-green under storm clouds.",
    ),
    ("What is inflation?", "A general rise in prices, which means each unit of money buys less over time."),
    (
        "How do vaccines work?",
        "They show the immune system a harmless piece or copy of a pathogen, so it learns to recognise and fight the real thing quickly.",
    ),
    ("Why do cats purr?", "Mostly to signal contentment, but also to soothe themselves when stressed or hurt."),
    ("What is the tallest mountain?", "Mount Everest, at 8,849 metres above sea level"),
    ("Where can I read the Python docs?", "The official documentation lives at https://docs.python.org/3/"),
    ("Link to the Rust book?", "It is free online: https://doc.rust-lang.org/book/"),
    ("Where is PyTorch's install page?", "See https://pytorch.org/get-started/locally/"),
    ("Where do I report a bug in CPython?", "Open an issue at https://github.com/python/cpython/issues"),
    ("What's the URL of Wikipedia?", "https://www.wikipedia.org/"),
    ("Which site explains regular expressions well?", "Try www.regular-expressions.info"),
]

LISTS = [
    ("List three primary colours.", "1. Red\n2. Blue\n3. Yellow"),
    (
        "Give me a packing list for a beach day.",
        "- sunscreen\n- towel\n- water bottle\n- a good book\n- snacks for the afternoon",
    ),
    (
        "What are the steps to make tea?",
        "1. Boil water\n2. Put a tea bag in a cup\n3. Pour the water over it\n4. Steep for three to five minutes\n5. remove the bag and add milk if you like",
    ),
    ("Name some renewable energy sources.", "* Solar\n* Wind\n* Hydroelectric\n* Geothermal"),
    (
        "How do I set up a Python project?",
        "1. Create a virtual environment with `python -m venv .venv`\n2. Activate it\n3. install your dependencies with pip and pin them in a requirements file for the rest of the team",
    ),
    ("List the planets.", "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune"),
    (
        "Give me three tips for better sleep.",
        "- Keep a regular schedule\n- Avoid screens an hour before bed\n- keep the bedroom cool and dark so your body can wind down naturally every night",
    ),
    ("What should a CV include?", "- contact details\n- a short profile\n- work experience\n- education\n- skills"),
    (
        "Pros and cons of remote work?",
        "**Pros**\n- No commute\n- Flexible hours\n\n**Cons**\n- Isolation\n- Blurred work-life boundaries",
    ),
    ("What's in a balanced breakfast?", "• Whole grains\n• Protein such as eggs or yoghurt\n• Fruit"),
    ("Steps to reset a router?", "1) Unplug it\n2) Wait 30 seconds\n3) Plug it back in"),
    ("List useful Git commands.", "- `git status`\n- `git add -p`\n- `git commit`\n- `git log --oneline`"),
    ("Which fruits are high in vitamin C?", "Oranges, kiwis, strawberries and guavas"),
    (
        "List resources for learning SQL.",
        "- https://sqlbolt.com/\n- https://www.postgresql.org/docs/current/tutorial.html\n- https://mode.com/sql-tutorial/",
    ),
    (
        "Give me a weekly workout plan.",
        "| Day | Workout |\n|-----|---------|\n| Mon | Run 5 km |\n| Wed | Strength |\n| Fri | Swim |",
    ),
]

MARKDOWN = [
    (
        "Explain recursion.",
        "## Recursion\n\nA function is **recursive** when it calls itself on a smaller input until it reaches a **base case**.",
    ),
    ("Give a bold warning.", "**Never commit secrets to a repository.**"),
    ("Summarise the key point in bold.", "The key point: **measure before you optimise**"),
    (
        "Explain Python's unpacking.",
        "Use `*args` for extra positional arguments and **kwargs for extra keyword arguments.",
    ),
    (
        "How do I forward keyword arguments?",
        "Accept them and pass them on:\n\ndef wrapper(*args, **kwargs):\n    return inner(*args, **kwargs)",
    ),
    ("What is 2 to the 10th power in Python?", "Write 2**10, which is 1024"),
    ("How do I square x in Python?", "Use x**2 or pow(x, 2)"),
    ("Show me emphasis in Markdown.", "Use *italics* for emphasis and **bold** for strong emphasis."),
    ("Format a heading.", "# Project Title"),
    ("Quote something famous.", "> The only thing we have to fear is fear itself.\n\n(Franklin D. Roosevelt, 1933)"),
    ("Write a checklist.", "- [x] Write the draft\n- [ ] Review it\n- [ ] Publish"),
    (
        "What does **kwargs do?",
        "It collects the keyword arguments a function did not name into a dictionary called kwargs.",
    ),
    (
        "Explain the merge step.",
        "**Merge step:** combine two sorted halves by repeatedly taking the smaller front element.",
    ),
    ("What is a footnote in Markdown?", "Text with a marker[^1].\n\n[^1]: The footnote itself."),
]

CODE = [
    ("Write a function to add two numbers.", "```python\ndef add(a, b):\n    return a + b\n```"),
    ("Reverse a string in Python.", "Use slicing: `s[::-1]`."),
    (
        "Write hello world in C.",
        '```c\n#include <stdio.h>\n\nint main(void) {\n    printf("hello, world\\n");\n    return 0;\n}\n```',
    ),
    ("How do I install requests?", "```bash\npip install requests\n```"),
    ("Compute a mean in Python.", CODE_TEXT),
    (
        "Read a file line by line in Python.",
        "```python\nwith open(path) as f:\n    for line in f:\n        print(line.rstrip())\n```\nThe `with` block closes the file for you.",
    ),
    ("How do I list files in bash?", "Use ls:\n\n    ls -la"),
    ("How to check the Python version?", "$ python --version"),
    (
        "Write a SQL query for the top five customers.",
        "```sql\nSELECT name, SUM(total) AS spent\nFROM orders\nGROUP BY name\nORDER BY spent DESC\nLIMIT 5;\n```",
    ),
    ("Write a JavaScript arrow function that doubles a number.", "```js\nconst double = (x) => x * 2;\n```"),
    ("How do I create a branch?", "git checkout -b my-feature"),
    ("Print the numbers 1 to 5 in Python.", "```python\nfor i in range(1, 6):\n    print(i)\n```"),
    (
        "Make an HTTP GET request in Python.",
        '```python\nimport requests\n\nresponse = requests.get("https://example.com", timeout=10)\nprint(response.status_code)\n```',
    ),
    ("Sort a list of dicts by a key.", '`sorted(items, key=lambda d: d["age"])` returns a new list ordered by age'),
    (
        "What does `git stash` do?",
        "It shelves your uncommitted changes so you can switch branches, and `git stash pop` brings them back.",
    ),
    ("Show a Rust struct.", "```rust\nstruct Point {\n    x: f64,\n    y: f64,\n}\n```"),
    (
        "How do I define a dataclass?",
        "```python\nfrom dataclasses import dataclass\n\n@dataclass\nclass Point:\n    x: float\n    y: float\n```",
    ),
    ("How to exit vim?", "Press Esc, then type :wq and Enter to save and quit"),
    (
        "Write a Dockerfile for a Python app.",
        '```dockerfile\nFROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN pip install -r requirements.txt\nCMD ["python", "main.py"]\n```',
    ),
    ("Python one-liner to flatten a list of lists?", "[x for row in rows for x in row]"),
    (
        "What is a Python decorator?",
        "A function that takes a function and returns a new one, applied with the `@name` syntax above a definition.",
    ),
    ("How do I merge two dicts in Python 3.9+?", "merged = a | b"),
    ("Write a regex for digits.", "`\\d+` matches one or more digits."),
    ("Show me a for loop in Go.", "```go\nfor i := 0; i < 3; i++ {\n    fmt.Println(i)\n}\n```"),
    (
        "Install numpy and pandas.",
        "```bash\npip install numpy pandas\n```\n\nThen import them with `import numpy as np` and `import pandas as pd`.",
    ),
    (
        "Explain list comprehensions.",
        "They build a list from an iterable in one expression, e.g. `[x * x for x in range(5)]` gives `[0, 1, 4, 9, 16]`.",
    ),
    ("Command to count lines in a file?", "wc -l file.txt"),
    ("How do I make a venv?", "python -m venv .venv && source .venv/bin/activate"),
    ("How to pass options through in Python?", "def run(cmd, **options):\n    return subprocess.run(cmd, **options)"),
]

MATH = [
    ("What is 12 * 7?", "84"),
    ("Solve x + 3 = 10.", "x = 7"),
    ("Solve 2x = 9.", "Dividing both sides by 2 gives x = 4.5"),
    ("What is the derivative of x^2?", "$2x$"),
    ("Integrate 3x^2.", "$$\\int 3x^2\\,dx = x^3 + C$$"),
    ("What is the square root of 144?", "12"),
    ("Compute 15% of 80.", "0.15 × 80 = 12"),
    ("What is pi to five decimals?", "3.14159"),
    ("Simplify 6/8.", "$\\frac{3}{4}$"),
    ("Is 91 prime?", "No: 91 = 7 × 13."),
    ("What is the area of a circle of radius 3?", "$A = \\pi r^2 = 9\\pi \\approx 28.27$"),
    ("Find the mean of 2, 4, 6.", "(2 + 4 + 6) / 3 = 4"),
    (
        "A train travels 120 km in 2 hours. What is its speed?",
        "Speed = distance / time = 120 / 2 = 60 km/h.\n\nThe answer is 60.",
    ),
    (
        "Natalia sold 48 clips in April and half as many in May. How many altogether?",
        "In May she sold 48 / 2 = 24 clips.\nAltogether: 48 + 24 = 72.\n#### 72",
    ),
    ("What is 2^10?", "2^10 = 1024"),
    ("Solve x^2 - 5x + 6 = 0.", "Factor: (x - 2)(x - 3) = 0, so x = 2 or x = 3"),
    ("Find the limit of sin(x)/x as x approaches 0.", "$\\lim_{x\\to 0} \\frac{\\sin x}{x} = 1$"),
    ("What is 7 factorial?", "7! = 5040"),
    ("Convert 0.375 to a fraction.", "3/8"),
    ("What is the sum of angles in a triangle?", "180°"),
    ("Compute the determinant of [[1,2],[3,4]].", "$1\\cdot 4 - 2\\cdot 3 = -2$"),
    ("What is log base 2 of 32?", "5"),
    ("Evaluate 3 + 4 × 2.", "3 + 8 = 11"),
    ("How many ways to choose 2 of 5?", "$\\binom{5}{2} = 10$"),
    ("Round 3.14159 to two decimals.", "3.14"),
    ("Solve for y: 3y - 2 = 13.", "3y = 15\ny = 5"),
    ("Express 45 minutes in hours.", "0.75 hours"),
    ("What is the GCD of 18 and 24?", "6"),
    ("Final answer please: 17 + 25?", "Final Answer: The final answer is $42$. I hope it is correct."),
    ("Solve 5x = 20 and box the answer.", "Dividing by 5: $x = \\boxed{4}$"),
]

CHINESE = [
    ("中国的首都是哪里？", "北京。"),
    ("一年有几个月？", "十二个月"),
    ("请解释什么是光合作用。", "光合作用是植物利用光能把二氧化碳和水转化为葡萄糖并释放氧气的过程。"),
    ("这道题对吗？", "你说得对"),
    ("这个答案是谁给的？", "是老师给的"),
    ("他今天在办公室吗？", "他今天不在"),
    ("这样做可以吗？", "当然是可以的"),
    ("你觉得这个方案怎么样？", "我觉得挺好的"),
    ("请推荐一本历史书。", "推荐《万历十五年》，作者是黄仁宇，写得很好读。"),
    ("列出三种水果。", "1. 苹果\n2. 香蕉\n3. 橙子"),
    ("怎样泡绿茶？", "- 水温八十度左右\n- 先温杯\n- 泡两到三分钟"),
    ("长城有多长？", "明长城全长约八千八百五十公里"),
    ("请写一首关于秋天的短诗。", "秋风起\n落叶黄\n一行大雁向南方"),
    ("什么是机器学习？", "机器学习是人工智能的一个分支，让计算机从数据中学习规律并做出预测。"),
    ("1加1等于几？", "1加1等于2"),
    ("请计算 12 乘以 8。", "12 × 8 = 96"),
    ("北京到上海有多远？", "直线距离大约一千零七十公里，高铁约四个半小时。"),
    ("解释一下 HTTP 协议。", "HTTP 是一种应用层协议，用于浏览器和服务器之间传输数据，常见的请求方法有 GET 和 POST。"),
    ("Python 里怎么发 GET 请求？", "用 requests.get(url) 发请求，再用 response.json() 读结果"),
    ("pandas 怎么按列分组？", "使用 df.groupby('列名') 就可以分组"),
    ("numpy 怎么求逆矩阵？", "调用 numpy.linalg.inv(A) 即可"),
    ("怎么在 Linux 下查看端口占用？", "可以用 ss -tlnp 或者 lsof -i :8080 查看"),
    (
        "请解释这个英文句子的意思：The early bird catches the worm.",
        "“The early bird catches the worm” 的意思是早起的鸟儿有虫吃，比喻先行动的人更容易成功。",
    ),
    ("这句英文是什么意思：Actions speak louder than words", "Actions speak louder than words 意思是行动胜于言辞。"),
    ("帮我解释 machine learning 这个词。", "machine learning 就是机器学习，指让计算机从数据中学习的技术。"),
    ("Git 怎么撤销上一次提交？", "用 git reset --soft HEAD~1 撤销提交并保留改动"),
    ("官网地址是什么？", "官网是 https://www.python.org/"),
    ("请给出文档链接。", "文档在这里：https://docs.python.org/zh-cn/3/"),
    ("你好！", "你好！有什么可以帮你的吗？"),
    ("谢谢你的帮助。", "不客气！"),
    ("怎样保持健康？", "规律作息、均衡饮食、每周适量运动，并且保持好心情。"),
    ("请用一句话介绍杭州。", "杭州是浙江省省会，以西湖闻名"),
    ("水的沸点是多少？", "标准大气压下是一百摄氏度"),
    ("李白是哪个朝代的诗人？", "唐代"),
    ("请写一个求和函数。", "```python\ndef total(xs):\n    return sum(xs)\n```\n这个函数返回列表之和。"),
    ("请翻译：Good morning", "早上好"),
    ("什么是 API？", "API 是应用程序接口，规定了程序之间如何互相调用。"),
    ("请解释递归。", "递归就是函数调用自身，直到遇到终止条件为止"),
    ("这个词怎么读？", "读作 dì tú，就是地图的意思"),
    ("请说明目的。", "这样做是为了达到节约成本的目的"),
    ("我们下一步去哪？", "下一步去目的地"),
]

EXTRA_ENGLISH = [
    (
        "How do I make cold brew coffee?",
        "Mix coarse ground coffee with cold water at about 1:8, steep it in the fridge for 12 to 18 hours, then strain.",
    ),
    ("What causes tides?", "Mainly the Moon's gravity, with a smaller pull from the Sun."),
    (
        "Should I learn Python or JavaScript first?",
        "Python if you want data or scripting; JavaScript if you want to build websites. Both are fine first languages.",
    ),
    (
        "What is a black hole?",
        "A region where gravity is so strong that nothing, not even light, escapes from inside its event horizon.",
    ),
    ("Give me a word that rhymes with light.", "Bright"),
    ("What is the boiling point of water in Fahrenheit?", "212 °F at sea level"),
    ("Name a famous physicist.", "Marie Curie"),
    (
        "How many continents are there?",
        "Seven: Africa, Antarctica, Asia, Australia, Europe, North America and South America.",
    ),
    (
        "Explain supply and demand.",
        "When demand rises faster than supply, prices go up; when supply outpaces demand, prices fall.",
    ),
    ("What is the chemical symbol for gold?", "Au"),
    ("Suggest a name for a bakery.", "Rise & Shine Bakery"),
    (
        "How do I tie a tie?",
        "Drape it with the wide end longer, cross it over, loop it up through the neck, pull it down through the knot and tighten.",
    ),
    (
        "What is the main idea of Darwin's theory?",
        "Species change over generations through natural selection of inherited variation.",
    ),
    ("Describe a sunset in one line.", "The sky melted from gold to violet as the sun slipped below the hills."),
    (
        "Why do leaves change colour?",
        "As chlorophyll breaks down in autumn, yellow and orange pigments show through and red ones are made.",
    ),
    ("What language is spoken in Brazil?", "Portuguese"),
    ("Is coffee bad for you?", "In moderation, no: up to about four cups a day is considered safe for most adults."),
    ("Write a limerick opening line.", "There once was a coder from Leeds"),
    ("What does CPU stand for?", "Central processing unit"),
    ("How far is the Moon?", "About 384,400 km on average"),
    ("Give an example of a metaphor.", '"Time is a thief" is a metaphor.'),
    ("What is the capital of Canada?", "Ottawa"),
    (
        "How do I stop procrastinating?",
        "Break the task into a first step that takes five minutes, and start that step now.",
    ),
    (
        "What is machine learning?",
        "Teaching computers to find patterns in data instead of following hand-written rules.",
    ),
    (
        "Tell me about the Great Wall of China.",
        "It is a series of fortifications built over centuries, stretching more than 20,000 km across northern China.",
    ),
    ("Who wrote 红楼梦?", "It was written by Cao Xueqin (曹雪芹) in the 18th century."),
    ("Where is 西湖?", "西湖 is a lake in Hangzhou."),
    ("What is the population of Earth?", "Roughly 8.1 billion people as of 2024"),
    ("Recommend a podcast about history.", "Try *Revolutions* by Mike Duncan"),
    ("What is the square root of two?", "Approximately 1.41421"),
]

CLEAN = ENGLISH + LISTS + MARKDOWN + CODE + MATH + CHINESE + EXTRA_ENGLISH

CUT_OFF = [
    ("Explain how vaccines work.", "Vaccines train the immune system by exposing it to a harmless piece of the"),
    ("Describe the water cycle.", "Water evaporates from oceans, condenses into clouds and"),
    ("Explain recursion.", "A recursive function calls itself with a smaller input until it reaches the"),
    ("Write code to sort a list.", "```python\ndef sort(xs):\n    return sorted(xs"),
    ("List the steps.", "1. Open the box\n2. The second item is"),
    ("Explain it.", "The function returns the value (which is computed by"),
    ("Tips?", "1. **Install Python**\n2. **Create a"),
    ("Tell me about Rome.", "Rome was founded, according to legend, in 753 BC by Romulus, who"),
    ("Explain inflation.", "Inflation is a general rise in prices,"),
    ("Explain gravity.", "Gravity is the force that"),
    ("介绍一下长城。", "长城始建于春秋战国时期，后来秦始皇统一六国以后将各国的长城连接起来并且不断"),
    ("为什么天空是蓝色的？", "因为阳光中的蓝光波长较短，更容易被空气分子散射，所以"),
    ("怎么学编程？", "先选一门语言，比如 Python，然后多写代码，如果"),
    (
        "Describe a cat.",
        "Cats are small, agile predators with keen senses and a strong tendency to sleep for most of the",
    ),
    ("What is DNA?", "DNA is the molecule that carries the genetic instructions of living things, and it is made of"),
]

GENERIC = [
    ("How do I learn to swim?", "I hope this helps!"),
    ("How do I learn to swim?", "Hope this helps!"),
    ("Can you explain black holes?", "Let me know if you have any other questions."),
    ("怎样学习编程？", "希望对你有帮助！"),
    ("Tell me about Rome.", "I hope this helps. Let me know if you have any other questions."),
    ("Tell me about cats.", "Cats are great. Hope this helps!"),
    ("What is AI?", "Feel free to ask if you have more questions."),
    ("介绍一下北京。", "希望这能帮到你。"),
]

MIXED = [
    ("What is the boiling point of water?", "Water boils at 100 度 at sea level."),
    ("Explain recursion.", "Recursion is when a function calls itself. 这是一个重要的概念。"),
    ("请解释什么是量子计算。", "Quantum computing uses qubits that can be in superposition of states."),
    ("What is the capital of France?", "The capital is 巴黎."),
    ("中国有多少个省？", "China has 23 provinces, 5 autonomous regions and 4 municipalities."),
    ("How do plants grow?", "Plants grow through 光合作用 and cell division."),
]
