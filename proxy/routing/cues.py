"""Multilingual cue lexicons for the classifier (owns: which words hint at which task).

Data only; `proxy/routing/classify.py` weighs these cues together with structural features (code
blocks, math, document length, tools, conversation), so no single word decides a category.
Languages: English, German, French, Spanish (word cues, matched as whole lower-case words)
and Chinese, Japanese (substring cues, only scanned when the text is not ASCII).

Weights: 3 strong, 2 medium, 1 weak. Complexity cues move the 1-5 estimate by one step each.
"""

from __future__ import annotations

import re

# (category, weight, space-separated words). Words are matched after lower-casing and
# replacing punctuation (except - and ') by spaces, so write inflections out.
_WORDS: list[tuple[str, float, str]] = [
    (
        "deep_reasoning",
        3,
        """
        prove proof proofs theorem lemma corollary derive derivation induction contradiction rigorous
        rigorously axiom axioms riddle puzzle paradox syllogism deduce deduction counterexample
        irrational undecidable np-hard np-complete isomorphic bijection
        beweise beweisen beweis herleiten herleitung widerspruch induktion
        démontrer démontrez démontre démonstration prouver prouvez preuve théorème récurrence
        demuestra demostrar demostración demuestre teorema inducción contradicción""",
    ),
    (
        "deep_reasoning",
        2,
        """
        probability probabilities expected-value optimal optimality strategy strategies tradeoffs
        trade-offs trade-off equilibrium logic logically infer hypothesis solve equation equations
        integral derivative eigenvalue eigenvalues converge converges convergence asymptotic
        decompose dilemma game-theoretic bayesian combinatorics permutations combinations divisible
        integers parity modulo roots minimum maximum minimise minimize maximise maximize polynomial
        quadratic
        reasoning flaw fallacy fermi intuition odds
        wahrscheinlichkeit gleichung gleichungen löse berechne strategie optimale logik
        probabilité équation équations résous résoudre stratégie optimale logique
        probabilidad ecuación ecuaciones resuelve resolver estrategia óptimo óptima lógica""",
    ),
    ("deep_reasoning", 1, "calculate compute estimate plan planning analyze analyse reason why-not"),
    (
        "complex_coding",
        3,
        """
        function functions implement implementation refactor refactoring debug debugging bug bugs
        compile compiler traceback stacktrace exception regex sql python javascript typescript java
        rust golang kotlin swift ruby php bash dockerfile pytest unittest jest snippet codebase
        segfault nullpointerexception async await mutex linter script scripts
        programmiere implementiere funktion skript quellcode programmieren
        fonction implémente implémenter implémentez déboguer bogue
        función funcion implementa implementar depurar código codigo""",
    ),
    (
        "complex_coding",
        2,
        """
        code program algorithm recursion api endpoint endpoints error errors crash crashes query queries
        postgresql postgres mysql sqlite class variable variables compiler runtime optimize optimise
        programm algorithmus fehlermeldung programme algorithme programa algoritmo""",
    ),
    (
        "complex_coding",
        1.5,
        """
        unit database schema migration docker kubernetes library framework react django flask fastapi
        css html yaml cli git commit merge backend frontend microservice microservices latency memory
        leak mongodb redis datenbank""",
    ),
    ("complex_coding", 1, "test tests method methods fail fails failing broken"),
    (
        "text_generation",
        3,
        """
        rewrite rephrase paraphrase proofread translate translation summarize summarise summary tldr
        tl;dr brainstorm schreibe verfasse formuliere übersetze übersetzung zusammenfassung fasse
        écris écrivez rédige rédigez reformule traduis traduire traduction résume résumez escribe
        escriba redacta reescribe traduce traducir traducción resume resumen""",
    ),
    (
        "text_generation",
        2,
        """
        write draft polish shorten expand outline tone formal informal friendlier wording headline
        compose entwurf schreib escribir""",
    ),
    # Genres: full weight next to a writing verb, half alone ("is this email phishing?").
    (
        "text_noun",
        3,
        """
        email e-mail letter blog post poem story essay article tweet caption slogan slogans bio speech
        toast haiku limerick lyrics newsletter announcement memo gedicht geschichte aufsatz anschreiben
        courriel lettre poème carta poema cuento""",
    ),
    (
        "text_noun",
        2,
        """
        copy description invitation apology cover press release marketing brief nachricht histoire
        texte correo historia artículo mensaje invitación""",
    ),
    (
        "classification",
        3,
        """
        classify classification categorize categorise categorization label labels sentiment intent
        extract extraction spam toxic toxicity moderation triage entities ner pii classe
        klassifiziere klassifizieren kategorisiere kategorisieren extrahiere stimmung
        classifie classer catégorise catégoriser extrais extraire clasifica clasificar categoriza
        extrae extraer sentimiento""",
    ),
    (
        "classification",
        2,
        """
        tag tags category categories fields json parse detect positive negative neutral urgency
        priority kategorie kategorien absicht catégorie catégories intention categoría categorías intención""",
    ),
    (
        "embedding",
        3,
        """
        embedding embeddings embed vector vectors cosine rerank re-rank reranking similarity
        deduplicate dedupe near-duplicate near-duplicates clustering cluster
        ähnlichkeit einbettung vektor vektoren similarité plongement vecteur vecteurs sémantiquement
        similitud vectores incrustación semánticamente semantisch""",
    ),
    (
        "embedding",
        2,
        """
        similar duplicates duplicate relevance relevant semantically semantic ähnlich ähnliche similaire
        similaires similares equivalent equivalents""",
    ),
    ("agentic_tool_use", 3, "browse navigate automate agent tool tools"),
    (
        "agentic_tool_use",
        2,
        """
        fetch send book schedule reserve lookup click download upload
        buche sende suche réserve envoie cherche exécute reserva envía busca ejecuta""",
    ),
    (
        "qa_retrieval",
        2,
        """
        explain define definition meaning difference erkläre erklären bedeutet bedeutung unterschied
        explique expliquez signifie différence explica explícame significa diferencia""",
    ),
]

# Substring cues (lower-cased text): phrases, plus Chinese and Japanese (no word boundaries).
_PHRASES: list[tuple[str, float, str]] = [
    (
        "qa_retrieval",
        2,
        "what is|what are|what's|what does|what were|who is|who was|when did|when was|when is|"
        "how does|how do|how can|how many|how much|why does|why is|why do|why are|tell me about|"
        "difference between|is it true|can i|should i|qu'est-ce|c'est quoi|qué es|por qué|was ist|"
        "wie funktioniert|warum|pourquoi|cómo|different from|differ from|how long|the context|"
        "answer the question|based on the",
    ),
    (
        "agentic_tool_use",
        3,
        "search the web|look up|use the tool|call the|search for|check the weather|"
        "im internet|sur le web|en internet|book a|book me|send an email to|send it to|create a ticket",
    ),
    (
        "classification",
        3,
        "one of the following|which category|yes or no|true or false|only the label|"
        "respond with only|reply with only|answer with only|return only|one word|label only|"
        "exactly one label|output the label|one label|which language",
    ),
    ("text_generation", 2, "cover letter|press release|product description|make it more|more formal|more concise|in other words"),
    ("complex_coding", 3, "unit test|stack trace|pull request|time complexity|big-o|big o"),
    ("deep_reasoning", 2, "step by step|step-by-step|expected value|how many ways|worst case"),
    (
        "embedding",
        3,
        "semantic search|semantically similar|most similar|most relevant|rank these|"
        "rank the following|same meaning|paraphrase of|group them|group these|dieselbe bedeutung|"
        "gleiche bedeutung|même sens|mismo significado|by relevance|same thing|the same question|mean the same",
    ),
    ("deep_reasoning", 2, "case analysis|reason it out|walk me through the|show your reasoning|find a valid"),
    ("deep_reasoning", 3, "show that|prove that|zeige, dass|montrer que|montrez que|demuestra que"),
]
_CJK: list[tuple[str, float, str]] = [
    ("deep_reasoning", 3, "证明 推导 定理 引理 归纳法 証明 導出 帰納法 矛盾"),
    ("deep_reasoning", 2, "概率 最优 博弈 方程 确率 確率 最適 方程式 推論 逻辑 論理"),
    ("complex_coding", 3, "代码 函数 编程 调试 程序 脚本 代碼 コード 関数 実装 デバッグ バグ プログラム スクリプト"),
    ("complex_coding", 2, "实现 算法 报错 接口 数据库 アルゴリズム エラー データベース"),
    ("text_generation", 3, "翻译 总结 摘要 改写 润色 翻訳 要約 書き直 校正 添削"),
    ("text_generation", 2, "邮件 文章 诗 故事 写一 撰写 メール 記事 物語 書いて 作成して 文案"),
    ("classification", 3, "分类 提取 情感 归类 分類 抽出 感情分析 ラベル"),
    ("classification", 2, "标签 类别 カテゴリ 感情"),
    ("embedding", 3, "相似度 向量 嵌入 聚类 去重 语义 類似度 ベクトル 埋め込み クラスタ 重複 同じ意味 意思相同"),
    ("embedding", 2, "相似 類似"),
    ("agentic_tool_use", 2, "搜索 预订 发送 检索 検索 予約 送信"),
    ("qa_retrieval", 2, "什么 为什么 如何 怎么 是谁 区别 解释 意思 なぜ どう とは 意味 違い 説明 何ですか"),
    ("qa_retrieval", 1, "吗 哪 ですか 何"),
]

# Complexity cues: each distinct hit moves the estimate by one step (capped by the classifier).
HARD_WORDS = frozenset(
    """
    rigorous rigorously formally formal optimal optimally distributed concurrency concurrent thread-safe
    lock-free deadlock deadlocks race scalable scalability production production-grade architecture
    microservices fault-tolerant consensus byzantine vulnerability vulnerabilities audit exploit
    cryptographic comprehensive thorough in-depth detailed end-to-end tradeoffs trade-offs multi-step
    nuanced subtle complex complicated advanced novel entire complete full-featured sharded
    high-availability exactly-once linearizable compiler interpreter garbage multi-tenant zero-downtime
    autonomously autonomous reconcile conflicting sarcasm sarcastic irony ironic conditionally interact
    literary subtext publication rigour contested empirical failure
    umfassend umfassende detailliert detaillierte verteilt verteilte nebenläufig skalierbar komplex
    gründlich vollständig complet complète détaillé détaillée approfondi distribué complexe rigoureux
    rigoureuse exhaustive completo completa detallado detallada exhaustivo distribuido concurrente
    complejo compleja riguroso rigurosa""".split()
)
EASY_WORDS = frozenset(
    """
    simple simply quick quickly brief briefly one-line one-liner oneliner just typo
    tiny small basic trivial hello hi hey thanks thank
    einfach einfache kurz kurze schnell kleine rapide court courte bref brève sencillo sencilla
    rápido breve corto corta hola merci danke""".split()
)
HARD_CJK = (
    "详细",
    "分布式",
    "并发",
    "复杂",
    "全面",
    "严格",
    "深入",
    "架构",
    "詳細",
    "分散",
    "並行",
    "複雑",
    "包括的",
    "厳密",
    "アーキテクチャ",
)
EASY_CJK = ("简单", "简短", "一句话", "快速", "簡単", "短く", "一言", "手短")

# Analysis verbs: half a step each.
MEDIUM_WORDS = frozenset(
    """
    compare contrast evaluate assess critique justify recommend analyse analyze investigate diagnose
    vergleiche bewerte analysiere compare évalue analyse compara evalúa analiza""".split()
)

# Deictic references to an attached document.
DOC_DEICTIC = frozenset(
    """
    above below following attached here here's beigefügten folgenden obigen ci-dessous ci-dessus suivant
    adjunto siguiente anterior""".split()
)

# Words that point at an attached document (count only when a large message is present).
DOC_WORDS = frozenset(
    """
    document documents contract agreement paper report transcript manuscript chapter chapters pages
    attached clause clauses section sections appendix annex filing minutes book thesis
    dokument vertrag bericht protokoll anhang klausel contrat rapport transcription annexe
    documento contrato informe transcripción cláusula anexo""".split()
)
DOC_CJK = ("合同", "文档", "文件", "报告", "论文", "契約", "文書", "報告書", "論文", "議事録")

# Tool names that act on the world irreversibly: an agentic request with them is `critical`.
RISKY_TOOL_WORDS = frozenset("delete remove drop transfer payment pay refund deploy execute shell sql wire purge".split())

# Short definitional questions: "what does X mean?" is QA whatever X is.
DEFINITIONAL = re.compile(
    r"^\W*(?:what(?:'s| is| are| does)\s+(?:the\s+)?(?:word\s+|term\s+)?\W?[\w\s.-]{1,40}?\W?\s+(?:mean|stand for)\b"
    r"|what\s+is\s+(?:a|an|the)\s+\w+(?:\s+\w+)?\s*\??\s*$|what\s+is\s+meant\s+by|meaning\s+of|define\b|definition\s+of"
    r"|was\s+(?:bedeutet|heißt|ist\s+(?:ein|eine))\b|bedeutung\s+von|que\s+(?:veut\s+dire|signifie)"
    r"|qu'est-ce\s+qu(?:e|')|définition\s+de|signification\s+de|qu[ée]\s+(?:significa|quiere\s+decir|es\s+(?:un|una))"
    r"|definición\s+de|significado\s+de)",
    re.IGNORECASE,
)
DEFINITIONAL_CJK = ("是什么意思", "什么意思", "的意思", "是什么", "とは", "どういう意味", "の意味")

MATH = re.compile(r"[=^∑∫√≤≥∀∃∈π±×÷∞≠≈]|\\(?:frac|sum|int|sqrt|lim|forall|exists|mathbb|cdot|le|ge)\b|\$[^\s$][^$\n]{0,78}(?<=[^\s$])\$")
LIST_ITEM = re.compile(r"(?m)^\s*(?:[-*•]|\d{1,2}[.)])\s+\S")
LENGTH_ASK = re.compile(
    r"(\d{1,3}(?:[,.]\d{3})+|\d{2,5})\s*(?:-\s*)?(words?|wörter|wörtern|mots|palabras|字|語|文字|pages?|seiten)\b", re.IGNORECASE
)
CODE_MARKERS_COMMON = ("return ", ");", "{\n", "):\n", "</", "import ")  # checked first; most code has one
CODE_MARKERS = (
    "def ",
    "class ",
    "function ",
    "=> ",
    "};",
    "#include",
    "const ",
    "self.",
    "let ",
    "select ",
    ".append(",
    "= [",
    "for (",
    "elif ",
    "println(",
)
LENGTH_UNITS = ("word", "wört", "mots", "palabra", "page", "seite", "字", "語")
CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")  # kana and ideographs


def _build_words() -> dict[str, tuple[tuple[str, float], ...]]:
    table: dict[str, list[tuple[str, float]]] = {}
    for category, weight, words in _WORDS:
        for word in words.split():
            entry = table.setdefault(word, [])
            if all(c != category for c, _ in entry):
                entry.append((category, weight))
    return {w: tuple(v) for w, v in table.items()}


def _build_substrings(rows: list[tuple[str, float, str]], sep: str | None) -> tuple[tuple[str, str, float], ...]:
    out: list[tuple[str, str, float]] = []
    for category, weight, text in rows:
        for cue in text.split(sep):
            if cue.strip():
                out.append((cue.strip(), category, weight))
    return tuple(out)


WORD_CUES: dict[str, tuple[tuple[str, float], ...]] = _build_words()
WORD_SET = frozenset(WORD_CUES)
# Characters that separate words (kept: ' and -, which belong to words like "what's", "big-o").
PUNCT = str.maketrans({c: " " for c in '!"#$%&()*+,./:;<=>?@[\\]^_`{|}~\n\t\r“”‘’«»¿¡…，。！？、：；（）「」『』【】'})
PHRASE_CUES = _build_substrings(_PHRASES, "|")
# Phrases as whole words (" why do " does not match "why does"), indexed by their first word:
# only phrases whose first word occurs are searched.
PHRASES_BY_FIRST: dict[str, tuple[tuple[str, str, float], ...]] = {}
for _phrase, _category, _weight in PHRASE_CUES:
    _words = _phrase.translate(PUNCT).split()
    PHRASES_BY_FIRST[_words[0]] = PHRASES_BY_FIRST.get(_words[0], ()) + ((" " + " ".join(_words) + " ", _category, _weight),)
PHRASE_FIRST = frozenset(PHRASES_BY_FIRST)
CJK_CUES = _build_substrings(_CJK, None)

# Quoted spans are data the instruction talks about ("classify this: '...'"), not instruction.
# One pattern per opening quote, so each scan starts from a literal.
QUOTED: tuple[tuple[str, re.Pattern[str]], ...] = (
    ('"', re.compile(r'"[^"\n]{12,}"')),
    ("“", re.compile(r"“[^”]{12,}”")),
    ("«", re.compile(r"«[^»]{12,}»")),
    ("„", re.compile(r"„[^“”]{12,}[“”]")),
    ("「", re.compile(r"「[^」]{8,}」")),
    ("『", re.compile(r"『[^』]{8,}』")),
    ("'", re.compile(r"'(?<!\w')[^'\n]{20,}?'(?!\w)")),  # lookbehind after the literal: fast scan
)
FENCED = re.compile(r"```.*?(?:```|$)", re.DOTALL)
# "reply with exactly one label", "output the label only": a constrained, label-like answer.
CONSTRAINED_VERBS = ("reply with", "respond with", "answer with", "output", "return ", "antworte", "réponds", "responde")
CONSTRAINED_WORDS = frozenset("only exactly nur uniquement seulement solo únicamente".split())
# Live data: with tools present these ask for a tool call.
FRESH_WORDS = frozenset(
    """
    now today tonight tomorrow current currently latest live right-now this-week jetzt heute morgen
    aktuell aktuelle maintenant aujourd'hui demain actuel actuelle ahora hoy mañana actual""".split()
)
FRESH_CJK = ("现在", "今天", "明天", "最新", "今日", "明日", "現在")
