// The bundle's entry: defines <herald-inbox> and <herald-preferences> once.
import { HeraldInbox } from "./inbox.js";
import { HeraldPreferences } from "./preferences.js";

if (!customElements.get("herald-inbox")) customElements.define("herald-inbox", HeraldInbox);
if (!customElements.get("herald-preferences")) customElements.define("herald-preferences", HeraldPreferences);

export { HeraldInbox, HeraldPreferences };
