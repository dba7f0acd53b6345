/**
 * The database vendors OMFLOW supports. Its own module so the config area (which validates
 * OMFLOW_DB_URL with db/url.ts) and the db code (which needs the names) import it without
 * importing each other.
 */
export const DB_CLIENTS = ['postgres', 'mysql', 'mssql', 'oracle'] as const;
export type DbClientName = (typeof DB_CLIENTS)[number];
