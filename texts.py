"""Everything the bot says on its own behalf, in one place so it can be restyled without touching code.

The bot is informal: it says "ты" to everyone.
"""

GREETING = (
    "Привет! Я бот-собеседник на нейросети ruDialoGPT. Просто напиши мне что-нибудь.\n"
    "Я помню несколько последних реплик нашего разговора. /help — список команд."
)
HELP = (
    "Команды:\n"
    "/start — начать разговор заново\n"
    "/reset — забыть историю этого чата\n"
    "/context N — сколько последних реплик я учитываю (1–10)\n"
    "/settings — настройки чата\n"
    "/forget — удалить всё, что я храню об этом чате\n"
    "/toast — тост к празднику, например: /toast День космонавтики\n"
    "/horoscope — гороскоп на сегодня, например: /horoscope лев\n"
    "/daily — гороскоп каждый день: /daily лев 08:30, /daily off — отписаться\n"
    "/cancel — отменить вопрос о празднике\n"
    "/help — эта справка\n\n"
    "Всё остальное я воспринимаю как реплику в разговоре. "
    "В группе отвечаю, когда меня упоминают, отвечают на моё сообщение или зовут по имени, "
    "а если администраторы разрешат в /settings — иногда вступаю в разговор и сам."
)
# The menu Telegram shows next to the input field (setMyCommands).
COMMANDS = {
    "start": "Начать разговор заново",
    "reset": "Забыть историю чата",
    "context": "Сколько реплик учитывать: /context 3",
    "settings": "Настройки чата",
    "forget": "Удалить всё, что бот хранит о чате",
    "toast": "Тост к празднику",
    "horoscope": "Гороскоп на сегодня: /horoscope лев",
    "daily": "Гороскоп каждый день: /daily лев 08:30",
    "help": "Справка",
}
HISTORY_CLEARED = "Историю забыл. Начнём с чистого листа!"
FALLBACK_REPLY = "Хм, даже не знаю, что ответить. Расскажи подробнее?"
NOT_TEXT = "Я понимаю только текст. Напиши мне словами 🙂"
EMPTY_TEXT = "Кажется, в сообщении нет текста, который я могу прочитать. Напиши что-нибудь словами."
BUSY = "Сейчас много собеседников, я не успеваю. Попробуй ещё раз через минуту."
TIMEOUT = "Прости, я слишком долго думал и сбился. Попробуй ещё раз."
# Sent when the draft's stop button was pressed before a single whole word was written.
STOPPED_EMPTY = "Хорошо, остановился — ещё ничего не успел написать."
ERROR = "Ой, что-то пошло не так. Я уже сообщил администратору, попробуй ещё раз чуть позже."

ADMIN_STARTED = "Бот запущен.\n{models}\nЗагрузка: {load_seconds:.1f} с"
ADMIN_STOPPING = "Бот останавливается."
MISSED_WHILE_AWAY = "Прости, я был недоступен и пропустил это сообщение. Напиши ещё раз, если это ещё актуально."
UNKNOWN_COMMAND = "Такой команды я не знаю. Список команд — /help"
SLOW_DOWN = "Я ещё отвечаю на твои предыдущие сообщения. Подожди немного 🙂"
ADMIN_ALERT = "⚠️ Ошибка в боте: {error}"
ADMIN_ALERT_MORE = "⚠️ И ещё ошибок: {count} за {seconds} с (подробности в логе)."
NOT_ALLOWED = "Извини, я разговариваю только с теми, кого мне разрешили."

# {turns_word}: the word's form for the number, from plural() below.
SETTINGS = "Настройки чата:\nКонтекст: {turns} {turns_word}\nСтиль ответов: {style}"
TURNS_WORD = ("реплика", "реплики", "реплик")
CONTEXT_BUTTON = "Контекст: {turns}"
CONTEXT_LESS = "−"
CONTEXT_MORE = "+"
CHOSEN_MARK = "✓ "
STYLE_NAMES = {"lively": "Живой", "calm": "Спокойный"}
# PROFANITY: the line /settings adds for it, and its buttons.
PROFANITY_SETTING = "\nМат: {profanity}"
PROFANITY_NAMES = {"allow": "можно", "mask": "звёздочками", "avoid": "стараюсь без него"}
PROFANITY_BUTTONS = {"allow": "Мат можно", "mask": "Мат: х**", "avoid": "Без мата"}
SETTINGS_SAVED = "Сохранено"
SETTINGS_EXPIRED = "Это сообщение устарело, вызови /settings ещё раз."
CONTEXT_RANGE = "Укажи число реплик от 1 до {maximum}, например: /context 3"
CONTEXT_SET = "Теперь я учитываю {turns} {turns_word}."
LAST_TURNS_WORD = ("последнюю реплику", "последние реплики", "последних реплик")
# A group's reply chance (REPLY_CHANCE): how often the bot answers what nobody said to it.
SETTINGS_REPLY_CHANCE = "\nОтвечаю без обращения: {chance}"
REPLY_CHANCE_SHARE = "на {percent} % сообщений"
REPLY_CHANCE_NEVER = "нет, только когда зовут"
REPLY_CHANCE_BUTTON = "{percent} %"
PRIVACY_MODE_ON = (
    "\n\n⚠️ Сейчас Telegram показывает мне только обращения ко мне, поэтому сам я в разговор не вступлю. "
    "Отключи мне режим приватности: @BotFather → /setprivacy → выбери меня → Disable, потом удали меня из "
    "группы и добавь снова. Или сделай меня администратором группы."
)
ADMINS_ONLY = "Менять настройки группы могут только её администраторы."
ADMIN_ONLY_COMMAND = "Эта команда только для администратора бота."

FORGET_QUESTION = "Удалить всю историю, настройки и подписку этого чата? Это нельзя отменить."
FORGET_YES = "Да, удалить"
FORGET_NO = "Отмена"
FORGOTTEN = "Готово: история, настройки и подписка этого чата удалены."
FORGET_CANCELLED = "Ничего не удалено."

STATS = (
    "Работаю: {uptime}\n"
    "Модель: {model}\n"
    "Чатов обслужено: {chats}\n"
    "Ответов сегодня: {replies}\n"
    "Ответов без обращения: {unprompted}, пропущено из-за нагрузки: {unprompted_skipped}\n"
    "Время ответа: {latency}\n"
    "Очередь: {queue}\n"
    "Ошибок с запуска: {errors}\n"
    "Отвечено после перезапуска: {recovered}\n"
    "Подписок на гороскоп: {subscriptions}\n"
    "Оценки 👍: {liked_today} сегодня, {liked_overall} всего"
)
UPTIME = "{hours} ч {minutes} мин"
LATENCY = "p50 {p50:.2f} с, p95 {p95:.2f} с"
NO_REPLIES_YET = "ответов ещё не было"

# --- Toasts and horoscopes -----------------------------------------------------------------------
HOLIDAY_EMOJI = {"new_year": "🎄", "birthday": "🎂", "feb23": "🪖", "mar8": "🌷", "wedding": "💍"}
OTHER_HOLIDAY = "Другой праздник…"
TOAST_MENU = "За что поднимем бокалы? Выбери праздник:"
ASK_HOLIDAY = (
    "Напиши, какой праздник, например: День космонавтики.\nВ группе — ответом на это сообщение. /cancel — передумать."
)
HOLIDAY_NOT_TEXT = "Напиши название праздника словами, или /cancel, чтобы передумать."
CANCEL_BUTTON = "Отмена"
CANCELLED = "Хорошо, отменил."
NOTHING_TO_CANCEL = "Отменять нечего 🙂"
HOROSCOPE_MENU = "Выбери знак зодиака:"
UNKNOWN_SIGN = "Не знаю такого знака. Знаки зодиака: {signs}. Например: /horoscope лев"
MORE_BUTTON = "Ещё"
TOAST_TITLE = "🥂 {topic}"
HOROSCOPE_TITLE = "{symbol} {name}"
FALLBACK_TOAST = "Что-то не сочиняется… Нажми «Ещё», попробую снова."
FALLBACK_HOROSCOPE = "Звёзды сегодня молчат… Нажми «Ещё», спрошу снова."

# --- Daily horoscope ----------------------------------------------------------------------------
DAILY_BUTTON = "Присылать каждый день"
DAILY_TITLE = "{symbol} {name}: гороскоп на {day}"
DAILY_SUBSCRIBED = "Готово: {sign} каждый день в {time} ({timezone})."
DAILY_FROM_TOMORROW = " Сегодня это время уже прошло, первый гороскоп придёт завтра."
DAILY_SHOW = "Подписка: {sign} каждый день в {time} ({timezone}). /daily off — отписаться."
DAILY_NONE = "Подписки на ежедневный гороскоп нет. Например: /daily лев 08:30"
DAILY_CANCELLED = "Подписка отменена, гороскопы больше не придут."
DAILY_USAGE = (
    "Напиши знак и, если хочешь, время: /daily лев 08:30 (без времени — в {time}).\n"
    "Знаки: {signs}.\nВремя — часы:минуты, от 00:00 до 23:59. /daily off — отписаться."
)

# --- Feedback (FEEDBACK) ------------------------------------------------------------------------
LIKE = "👍"
DISLIKE = "👎"
FEEDBACK_THANKS = "Спасибо!"
FEEDBACK_GONE = "Этот ответ уже удалён, оценка не сохранена. Спасибо всё равно!"
LIKED_SHARE = "{percent}% из {rated}"
NOT_RATED = "оценок нет"

# The console chat (python main.py --console).
CONSOLE_GREETING = "Консольный чат с моделью. /help — команды, /exit или Ctrl+D — выход."
CONSOLE_HELP = (
    "Команды:\n"
    "/start или /reset — забыть историю и начать заново\n"
    "/context N — сколько последних реплик я учитываю (1–10)\n"
    "/toast праздник — тост, например: /toast День космонавтики\n"
    "/horoscope знак — гороскоп на сегодня, например: /horoscope лев\n"
    "/help — эта справка\n"
    "/exit — выход (или Ctrl+D)\n"
    "Всё остальное — реплика в разговоре."
)
CONSOLE_PROMPT = "ты> "
CONSOLE_REPLY = "бот> {text}"
CONSOLE_EMPTY_LINE = "Пустая строка. Напиши что-нибудь, /help — команды."
CONSOLE_UNKNOWN_COMMAND = "В консоли такой команды нет. Список команд — /help"
CONSOLE_TOAST_USAGE = "Напиши праздник после команды, например: /toast День рождения. Любой, не только эти: {holidays}."
CONSOLE_NOTHING_COMPOSED = "Что-то не сочиняется… Повтори команду, попробую снова."


def plural(count: int, forms: tuple[str, str, str]) -> str:
    """The form of a word for ``count``, from its forms for 1, 2 and 5: 1 реплика, 3 реплики, 11 реплик, 21 реплика."""
    if count % 10 == 1 and count % 100 != 11:
        return forms[0]
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return forms[1]
    return forms[2]
