import { createPgliteDatabase } from '../../src/store/pglite.js';
import { defineStoreContract } from './contract.js';

defineStoreContract('pglite', { create: () => createPgliteDatabase() });
