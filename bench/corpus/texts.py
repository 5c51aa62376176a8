"""Seed sentences for the estimation corpus, by language and script.

Written for the corpus (not taken from a data set): everyday support, product and
technical sentences of the kind LLM gateways see, in the scripts whose bytes per token
differ most (ASCII Latin, accented Latin, Cyrillic, Greek, Arabic, Devanagari, Thai,
CJK, Hangul, emoji).
"""

from __future__ import annotations

LANGUAGES: dict[str, list[str]] = {
    "fr": [
        "Pourriez-vous résumer ce rapport en trois points clés pour l'équipe de direction ?",
        "Le déploiement a échoué à cause d'une variable d'environnement manquante dans la configuration.",
        "Je souhaite annuler ma commande passée la semaine dernière, car le colis n'est jamais arrivé.",
        "Les élèves doivent rédiger une dissertation sur l'évolution de la société française au XIXe siècle.",
        "Merci de vérifier la facture ci-jointe : le montant hors taxes ne correspond pas au devis.",
        "Quelle est la différence entre une clé étrangère et une clé primaire dans une base de données ?",
        "La réunion de jeudi est déplacée à vendredi matin, à neuf heures précises.",
        "Expliquez-moi, étape par étape, comment configurer un certificat TLS sur ce serveur.",
    ],
    "de": [
        "Können Sie mir bitte erklären, warum die Größe der Datenbank über Nacht so stark gewachsen ist?",
        "Die Lieferung verzögert sich voraussichtlich um zwei Wochen, da ein Zulieferer ausgefallen ist.",
        "Übersetzen Sie den folgenden Absatz ins Englische und behalten Sie den förmlichen Ton bei.",
        "Für die Überprüfung benötigen wir eine vollständige Liste aller Änderungen seit März.",
        "Bitte schreiben Sie eine höfliche Absage an den Bewerber, der sich auf die Stelle beworben hat.",
        "Die Geschwindigkeitsbegrenzung auf der Autobahn wird seit Jahren kontrovers diskutiert.",
        "Wie viele Zugriffe darf ein einzelner Schlüssel pro Minute durchführen, bevor er gesperrt wird?",
    ],
    "es": [
        "¿Podrías explicarme cómo funciona la facturación por uso en este servicio?",
        "El informe trimestral muestra un crecimiento del doce por ciento en la región de Andalucía.",
        "Necesito una receta sencilla de paella para seis personas, sin mariscos.",
        "La aplicación se cierra inesperadamente cuando intento subir una foto desde el móvil.",
        "Redacta un correo electrónico para felicitar al equipo por el lanzamiento del producto.",
        "¿Cuál es la mejor manera de aprender programación si nunca he escrito código?",
    ],
    "pt": [
        "Você pode revisar este contrato e apontar as cláusulas que parecem abusivas?",
        "A reunião de planejamento foi adiada para a próxima terça-feira à tarde.",
        "Não consigo acessar minha conta desde que troquei de celular; o código de verificação não chega.",
        "Explique a diferença entre inflação e deflação com exemplos do cotidiano.",
    ],
    "pl": [
        "Czy możesz przetłumaczyć tę instrukcję obsługi na język polski, zachowując terminologię techniczną?",
        "Zamówienie zostało wysłane wczoraj, ale śledzenie przesyłki nie działa.",
        "Proszę o krótkie podsumowanie najważniejszych zmian w przepisach podatkowych.",
        "Źródło błędu leży prawdopodobnie w źle skonfigurowanym serwerze pośredniczącym.",
    ],
    "vi": [
        "Bạn có thể giải thích sự khác biệt giữa học máy và trí tuệ nhân tạo không?",
        "Đơn hàng của tôi đã bị giao nhầm địa chỉ, xin hãy kiểm tra lại giúp tôi.",
        "Hãy viết một đoạn văn ngắn giới thiệu về lịch sử thành phố Hà Nội.",
    ],
    "ru": [
        "Объясните, пожалуйста, как работает ограничение скорости запросов в этом шлюзе.",
        "Отчёт за третий квартал показывает снижение расходов на двенадцать процентов.",
        "Напишите вежливое письмо клиенту с извинениями за задержку доставки.",
        "Почему приложение потребляет так много памяти после обновления до последней версии?",
        "Составьте план урока по истории для учеников восьмого класса.",
        "Сервер возвращает ошибку 502, когда нагрузка превышает сто запросов в секунду.",
    ],
    "el": [
        "Μπορείτε να μου εξηγήσετε πώς λειτουργεί η χρέωση ανά χρήση;",
        "Η παράδοση καθυστερεί λόγω απεργίας στα λιμάνια της χώρας.",
        "Γράψτε μια σύντομη περίληψη του άρθρου για το ενημερωτικό δελτίο.",
    ],
    "ar": [
        "هل يمكنك شرح كيفية إعداد حدود الاستخدام لكل مفتاح في هذه البوابة؟",
        "تأخر وصول الطلب بسبب سوء الأحوال الجوية في المنطقة.",
        "اكتب رسالة شكر قصيرة لفريق الدعم الفني على مساعدتهم السريعة.",
        "ما الفرق بين الذكاء الاصطناعي والتعلم الآلي؟",
    ],
    "hi": [
        "क्या आप मुझे बता सकते हैं कि इस सेवा में बिलिंग कैसे काम करती है?",
        "कृपया इस लेख का सारांश तीन वाक्यों में लिखें।",
        "मेरा ऑर्डर अभी तक नहीं पहुंचा है, कृपया इसकी स्थिति जांचें।",
    ],
    "th": [
        "คุณช่วยอธิบายวิธีตั้งค่าขีดจำกัดการใช้งานสำหรับแต่ละทีมได้ไหม",
        "การจัดส่งล่าช้าเนื่องจากสภาพอากาศไม่ดี",
        "กรุณาสรุปรายงานฉบับนี้ให้สั้นและเข้าใจง่าย",
    ],
    "zh": [
        "请帮我总结一下这份季度报告的主要内容，并列出三个关键风险。",
        "这个接口在高并发的情况下会返回超时错误，应该如何排查？",
        "我想取消上周的订单，因为包裹一直没有送到。",
        "请把下面这段话翻译成英文，保持正式的语气。",
        "数据库的备份策略需要每天执行一次全量备份和每小时一次增量备份。",
        "为什么模型在处理长文本时会出现遗忘前文内容的现象？",
        "公司计划在明年第一季度推出新的会员制度，以提高客户留存率。",
        "请用简单的语言解释什么是区块链技术。",
    ],
    "ja": [
        "この報告書の要点を三つにまとめてください。",
        "サーバーの負荷が高くなると、応答時間が大幅に遅くなります。",
        "先週注文した商品がまだ届いていません。配送状況を確認していただけますか。",
        "次の文章を丁寧な敬語に書き直してください。",
        "機械学習モデルの評価指標について、初心者にも分かるように説明してください。",
        "東京の天気は明日から週末にかけて雨が続く見込みです。",
    ],
    "ko": [
        "이 보고서의 핵심 내용을 세 문장으로 요약해 주세요.",
        "서버에 요청이 몰리면 응답 시간이 크게 늘어납니다.",
        "지난주에 주문한 상품이 아직 도착하지 않았습니다.",
        "다음 문장을 영어로 번역하고 문법적인 오류가 있으면 고쳐 주세요.",
        "인공지능과 머신러닝의 차이점을 쉽게 설명해 주세요.",
    ],
    "emoji": [
        "Great job team!!! 🎉🎉🚀 Launch day went perfectly 💯",
        "Can you turn this into a tweet with emojis? 🌍🌱♻️ Earth Day is coming 🌎",
        "👋 hi! my order #4411 still hasn't shipped 😕📦 any update?",
        "Rate my idea 🤔💡: an app that tracks houseplant watering 🪴💧⏰",
    ],
}

ENGLISH: list[str] = [
    "Summarise the attached incident report in three bullet points for the leadership team.",
    "Our deployment failed last night because an environment variable was missing from the configuration.",
    "I would like to cancel the order I placed last week; the parcel never arrived.",
    "Explain the difference between a foreign key and a primary key in a relational database.",
    "Write a polite reply to a customer who was charged twice for the same subscription.",
    "What are the trade-offs between optimistic and pessimistic locking in a busy web application?",
    "The quarterly report shows revenue up twelve percent, driven mostly by the enterprise segment.",
    "Draft a job description for a senior backend engineer who will own our billing platform.",
    "Please rewrite this paragraph so that a ten-year-old could understand it.",
    "List five common causes of memory leaks in long-running Python services and how to find them.",
    "The meeting on Thursday has moved to Friday morning at nine o'clock sharp.",
    "Translate the following product description into plain, friendly English.",
    "Why does the model forget details from the beginning of a very long conversation?",
    "Give me a step-by-step plan to migrate a PostgreSQL database to a new server with minimal downtime.",
    "Compare the battery life, weight and price of the three laptops in the table below.",
    "Our support queue doubled after the pricing change; suggest ways to triage tickets faster.",
    "Describe the water cycle, including evaporation, condensation, precipitation and collection.",
    "Is it safe to store API keys in environment variables, and what are the alternatives?",
    "Write a short story about a lighthouse keeper who discovers a message in a bottle.",
    "Create a weekly meal plan for a vegetarian family of four on a modest budget.",
    "Which HTTP status code should an API return when a client exceeds its rate limit?",
    "Review the following pull request description and point out anything that is unclear.",
    "The customer reports that exports larger than 10,000 rows time out after 30 seconds.",
    "Outline the main arguments for and against a four-day working week.",
    "Generate ten catchy names for a coffee shop that also sells second-hand books.",
]

SYSTEM_PROMPTS: list[str] = [
    "You are a helpful assistant. Answer concisely and cite sources when you can.",
    "You are a customer support agent for Acme Cloud. Be polite, never promise refunds, "
    "and escalate billing disputes to a human by calling the escalate tool.",
    "You are an expert Python reviewer. Point out bugs first, then style issues. Reply in Markdown.",
    "You translate between languages. Keep the formatting of the source text exactly; do not add commentary.",
    "You are a data analyst. When asked about numbers, show the calculation step by step, "
    "and say when the data is insufficient to answer.",
]
