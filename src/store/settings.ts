import { randomBytes } from 'node:crypto';
import type { Sql } from './sql.js';

/**
 * A secret shared by every server of the store, made on first use. Two servers racing to
 * make it both end up with the first one written.
 */
export async function sharedSecret(sql: Sql, key: string): Promise<Buffer> {
  await sql.query('INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [
    key,
    randomBytes(32).toString('base64'),
  ]);
  const { rows } = await sql.query<{ value: string }>('SELECT value FROM settings WHERE key = $1', [key]);
  return Buffer.from(rows[0].value, 'base64');
}
