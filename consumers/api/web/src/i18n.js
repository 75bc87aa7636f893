// Strings in English and Portuguese, chosen with the same fallback chain as Herald's templates:
// "pt_br" -> ["pt-BR", "pt", default]; junk or empty -> [default].

const LOCALE = /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/;

export const STRINGS = {
  en: {
    notifications: "Notifications",
    bellLabel: "Notifications, {n} unread",
    markAllRead: "Mark all read",
    markRead: "Mark read",
    archive: "Archive",
    open: "Open",
    empty: "You are all caught up.",
    loading: "Loading…",
    loadFailed: "Could not load notifications.",
    newItem: "New notification: {title}",
    unread: "Unread",
    close: "Close",
    preferences: "Notification preferences",
    category: "Category",
    locked: "Always on: {category} notifications are critical and cannot be turned off.",
    quietHours: "Quiet hours",
    quietEnabled: "Pause non-critical notifications during quiet hours",
    digest: "Digest",
    digestEnabled: "Email me a digest of unread notifications",
    from: "From",
    to: "To",
    timezone: "Time zone",
    save: "Save",
    saved: "Saved.",
    saveFailed: "Could not save: {reason}",
    channel_email: "Email",
    channel_sms: "SMS",
    channel_push: "Push",
    channel_in_app: "In-app",
    channel_webhook: "Webhook",
  },
  pt: {
    notifications: "Notificações",
    bellLabel: "Notificações, {n} por ler",
    markAllRead: "Marcar todas como lidas",
    markRead: "Marcar como lida",
    archive: "Arquivar",
    open: "Abrir",
    empty: "Não há nada por ler.",
    loading: "A carregar…",
    loadFailed: "Não foi possível carregar as notificações.",
    newItem: "Nova notificação: {title}",
    unread: "Por ler",
    close: "Fechar",
    preferences: "Preferências de notificação",
    category: "Categoria",
    locked: "Sempre ativo: as notificações de {category} são críticas e não podem ser desligadas.",
    quietHours: "Horas de silêncio",
    quietEnabled: "Pausar notificações não críticas durante as horas de silêncio",
    digest: "Resumo",
    digestEnabled: "Enviar-me por email um resumo das notificações por ler",
    from: "Das",
    to: "Às",
    timezone: "Fuso horário",
    save: "Guardar",
    saved: "Guardado.",
    saveFailed: "Não foi possível guardar: {reason}",
    channel_email: "Email",
    channel_sms: "SMS",
    channel_push: "Push",
    channel_in_app: "Na aplicação",
    channel_webhook: "Webhook",
  },
};

export function localeChain(locale, fallback = "en") {
  const chain = [];
  const given = typeof locale === "string" ? locale.trim() : "";
  if (given && LOCALE.test(given)) {
    let parts = given.replace(/_/g, "-").split("-");
    parts = [parts[0].toLowerCase(), ...parts.slice(1).map((p) => (p.length === 2 ? p.toUpperCase() : p))];
    for (let n = parts.length; n > 0; n--) chain.push(parts.slice(0, n).join("-"));
  }
  if (!chain.includes(fallback)) chain.push(fallback);
  return chain;
}

/** The first locale of the chain that has strings (always at least the fallback). */
export function resolveLocale(locale, available = STRINGS, fallback = "en") {
  return localeChain(locale, fallback).find((l) => l in available) ?? fallback;
}

export function translator(locale) {
  const table = STRINGS[resolveLocale(locale)];
  return (key, vars = {}) =>
    (table[key] ?? STRINGS.en[key] ?? key).replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}
