/**
 * A row or driver error object as knex hands it over: names to driver values, typed by none of
 * the four drivers alike. Each store's mapper (and the error translator) narrows the values.
 */
// biome-ignore lint/suspicious/noExplicitAny: the driver decides the value types; the mappers narrow them.
export type DbRecord = Record<string, any>;
