import { defineConfig } from 'drizzle-kit';

// `pnpm db:generate` writes the SQL migrations that ship in the package; the store applies them
// at open with drizzle's migrator, under the same table name as below.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/schema.ts',
  out: './migrations',
  migrations: {
    table: '__tollgate_tenancy_migrations',
    schema: 'drizzle',
  },
});
