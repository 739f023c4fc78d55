// `npm run analyze`: writes custom-elements.json (the elements' API, from their doc blocks) for IDEs and docs tools.
export default {
  globs: ['client/src/components/**/*.ts'],
  exclude: ['**/*.test.ts', '**/*.styles.ts'],
  outdir: '.',
  litelement: true,
  plugins: [
    {
      // Only the public API: no #private members, and not the typed overloads of add/removeEventListener.
      name: 'public-api-only',
      packageLinkPhase({ customElementsManifest }) {
        for (const module of customElementsManifest.modules) {
          for (const declaration of module.declarations ?? []) {
            declaration.members = declaration.members?.filter(
              (member) => member.privacy !== 'private' && !member.name.startsWith('#') && !/^(add|remove)EventListener$/.test(member.name),
            );
          }
        }
      },
    },
  ],
};
