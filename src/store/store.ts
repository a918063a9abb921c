import { ArchiveRepository } from './archive.js';
import { ClientPolicyRepository } from './clients.js';
import { ContactListRepository } from './contact-lists.js';
import { DirectoryJournalRepository } from './directory-journal.js';
import { FederationRepository } from './federation.js';
import { GroupRepository } from './groups.js';
import { HomeRepository } from './homes.js';
import { MigrationJournalRepository } from './migration-journal.js';
import { PublicationRepository } from './publications.js';
import { RegistrationRepository } from './registrations.js';
import { ServerRepository } from './servers.js';
import type { Database, Sql } from './sql.js';
import { UsageRepository } from './usage.js';
import { UserRepository } from './users.js';

/** The repositories, bound to one Sql: the database itself, or a transaction. */
export interface Repositories {
  users: UserRepository;
  homes: HomeRepository;
  registrations: RegistrationRepository;
  publications: PublicationRepository;
  contactLists: ContactListRepository;
  servers: ServerRepository;
  federation: FederationRepository;
  directoryJournal: DirectoryJournalRepository;
  migrationJournal: MigrationJournalRepository;
  clientPolicies: ClientPolicyRepository;
  archive: ArchiveRepository;
  usage: UsageRepository;
  groups: GroupRepository;
}

export interface Store extends Repositories {
  readonly db: Database;
  /** Runs fn with repositories bound to one transaction: all its writes commit or none. */
  transaction<T>(fn: (repos: Repositories) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export function createRepositories(sql: Sql): Repositories {
  return {
    users: new UserRepository(sql),
    homes: new HomeRepository(sql),
    registrations: new RegistrationRepository(sql),
    publications: new PublicationRepository(sql),
    contactLists: new ContactListRepository(sql),
    servers: new ServerRepository(sql),
    federation: new FederationRepository(sql),
    directoryJournal: new DirectoryJournalRepository(sql),
    migrationJournal: new MigrationJournalRepository(sql),
    clientPolicies: new ClientPolicyRepository(sql),
    archive: new ArchiveRepository(sql),
    usage: new UsageRepository(sql),
    groups: new GroupRepository(sql),
  };
}

export function createStore(db: Database): Store {
  return {
    db,
    ...createRepositories(db),
    transaction: (fn) => db.transaction((tx) => fn(createRepositories(tx))),
    close: () => db.close(),
  };
}
