#!/usr/bin/env node
import { execute } from '@oclif/core';
import { installExitCodeBridge } from '../dist/src/cli/exit-codes.js';

installExitCodeBridge();
await execute({ dir: import.meta.url });
