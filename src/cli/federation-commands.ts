import { Args, Flags } from '@oclif/core';
import {
  listPartners,
  type PartnerChange,
  type PartnerListing,
  putPartner,
  removePartner,
} from '../federation/admin.js';
import { renderPartners } from '../federation/render.js';
import { ParleyCommand } from './command.js';
import { domainFlag, storeFlags } from './flags.js';
import { nothingToPrepare, runChange, runWithStore, type StoreNamed } from './store-command.js';

type ListName = 'allow' | 'block';
const PAST: Record<ListName, string> = { allow: 'allowed', block: 'blocked' };

/**
 * `parley federation allow|block add|remove|list`: the allow and block lists are one table
 * with one rule (a domain is on one list at a time), so their commands are made here once,
 * for each list, and commands/federation/{allow,block}/*.ts only name them.
 */
export function partnerAddCommand(
  list: ListName,
  texts: { summary: string; description: string; examples: string[] },
) {
  return class PartnerAdd extends ParleyCommand {
    static override summary = texts.summary;
    static override description = texts.description;
    static override examples = texts.examples;
    static override enableJsonFlag = true;
    static override args = {
      domain: Args.string({ required: true, description: 'Partner domain (partner.example).' }),
    };
    static override flags = {
      ...storeFlags,
      ...domainFlag,
      ...(list === 'allow'
        ? {
            edge: Flags.string({
              summary: 'Pin the partner to this edge FQDN (its certificate must name it).',
            }),
          }
        : {}),
      note: Flags.string({ summary: 'Why (shown by list and show).' }),
    };

    async run(): Promise<PartnerChange & StoreNamed> {
      const { args, flags } = await this.parse(PartnerAdd);
      const edge = 'edge' in flags ? (flags.edge as string | undefined) : undefined;
      const change = await runChange(this, flags, nothingToPrepare, (store, config) =>
        putPartner(store, {
          domain: args.domain,
          action: list,
          edge,
          note: flags.note,
          ownDomain: config.domain,
        }),
      );
      const was =
        change.previous && change.previous !== change.action ? ` (was ${PAST[change.previous]})` : '';
      const verb = PAST[list][0].toUpperCase() + PAST[list].slice(1);
      this.log(
        change.changed ? `${verb} ${change.domain}${was}.` : `${change.domain} was already ${PAST[list]}.`,
      );
      return change;
    }
  };
}

export function partnerRemoveCommand(list: ListName) {
  return class PartnerRemove extends ParleyCommand {
    static override summary = `Take a domain off the ${list} list.`;
    static override description =
      'Federation with the domain is then closed (the default for any domain not on the allow list). Exits 3 when the domain is not on the list.';
    static override examples = ['<%= config.bin %> <%= command.id %> partner.example'];
    static override enableJsonFlag = true;
    static override args = { domain: Args.string({ required: true, description: 'Partner domain.' }) };
    static override flags = { ...storeFlags, ...domainFlag };

    async run(): Promise<{ domain: string; action: ListName } & StoreNamed> {
      const { args, flags } = await this.parse(PartnerRemove);
      const removed = await runChange(this, flags, nothingToPrepare, (store) =>
        removePartner(store, { domain: args.domain, action: list }),
      );
      this.log(`Removed ${removed.domain} from the ${list} list.`);
      return removed;
    }
  };
}

export function partnerListCommand(list: ListName) {
  return class PartnerList extends ParleyCommand {
    static override summary = `List the ${PAST[list]} partner domains.`;
    static override examples = [
      '<%= config.bin %> <%= command.id %>',
      '<%= config.bin %> <%= command.id %> --json',
    ];
    static override enableJsonFlag = true;
    static override flags = { ...storeFlags, ...domainFlag };

    async run(): Promise<PartnerListing> {
      const { flags } = await this.parse(PartnerList);
      const listing = await runWithStore(this, flags, (store) => listPartners(store, list));
      for (const line of renderPartners(listing)) this.log(line);
      return listing;
    }
  };
}
